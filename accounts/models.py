"""What an agent chooses for themselves, whatever workspace they work in (issue 17: the console language)."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _


class AgentProfile(models.Model):
    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="agent_profile")
    # Empty: the browser's language (Accept-Language), negotiated against settings.LANGUAGES.
    language = models.CharField(_("console language"), max_length=10, blank=True, choices=settings.LANGUAGES)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.user} ({self.language or 'browser'})"
