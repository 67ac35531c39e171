from django.apps import AppConfig


class AttachmentsConfig(AppConfig):
    """Images and PDFs sent in a conversation, stored through Django's storage API."""

    name = "attachments"
