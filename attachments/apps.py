from django.apps import AppConfig


class AttachmentsConfig(AppConfig):
    """Images and PDFs sent in a conversation, stored through Django's storage API."""

    name = "attachments"

    def ready(self) -> None:
        from attachments import signals  # noqa: F401  (connects the file clean-up on delete)
