"""Canned replies: a workspace's saved answers, typed in the composer as "/shortcut"."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from chatbots.models import Workspace


class CannedReply(models.Model):
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="canned_replies")
    # Lower-case letters, digits and dashes; unique per workspace ("/refund" in the composer).
    shortcut = models.SlugField(max_length=40)
    title = models.CharField(max_length=120, blank=True)
    # May hold {{visitor.name}}-style placeholders, filled from the conversation's lead data when inserted.
    text = models.TextField(max_length=5000)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workspace", "shortcut"]
        constraints = [
            models.UniqueConstraint(fields=["workspace", "shortcut"], name="canned_reply_unique_shortcut"),
        ]
        verbose_name_plural = _("canned replies")

    def __str__(self) -> str:
        return f"/{self.shortcut}"
