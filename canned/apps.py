from django.apps import AppConfig


class CannedConfig(AppConfig):
    """Saved replies per workspace, inserted from the console's composer with "/"."""

    name = "canned"
