"""Files sent in a conversation (images and PDFs), stored through Django's storage API."""

from __future__ import annotations

import uuid

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from conversations.models import Conversation, Event


def _upload_to(instance: Attachment, filename: str) -> str:
    # Never the sender's file name: a random one under the conversation's id.
    return f"attachments/{instance.conversation_id}/{uuid.uuid4().hex}"


class Attachment(models.Model):
    class Sender(models.TextChoices):
        VISITOR = "visitor", _("Visitor")
        AGENT = "agent", _("Agent")

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    conversation = models.ForeignKey(Conversation, on_delete=models.CASCADE, related_name="attachments")
    # The message event that carries it (set in the same transaction as the event is appended).
    event = models.ForeignKey(Event, null=True, blank=True, on_delete=models.SET_NULL, related_name="attachments")
    sender = models.CharField(max_length=10, choices=Sender.choices)
    agent = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    file = models.FileField(upload_to=_upload_to, max_length=255)
    thumbnail = models.FileField(upload_to=_upload_to, max_length=255, blank=True)
    # The type found in the content (never the sender's claim), e.g. image/png or application/pdf.
    content_type = models.CharField(max_length=100)
    size = models.PositiveIntegerField()
    width = models.PositiveIntegerField(null=True, blank=True)
    height = models.PositiveIntegerField(null=True, blank=True)
    # The sender's file name, cleaned, for display and the download's Content-Disposition only.
    name = models.CharField(max_length=255)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        ordering = ["conversation", "created_at"]

    def __str__(self) -> str:
        return f"{self.name} ({self.content_type})"
