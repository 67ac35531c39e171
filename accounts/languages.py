"""An agent's console language: read and set (the one place that writes AgentProfile.language)."""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.utils.translation import gettext as _

from accounts.models import AgentProfile


def agent_language(*, user: Any) -> str:
    """The agent's chosen language code, or "" (follow the browser)."""
    return AgentProfile.objects.filter(user_id=user.pk).values_list("language", flat=True).first() or ""


def agent_language_set(*, user: Any, language: str) -> AgentProfile:
    """Choose the console language ("" = the browser's). Refuses codes outside settings.LANGUAGES."""
    if language and language not in dict(settings.LANGUAGES):
        raise ValidationError(_("Choose one of the languages offered."), code="invalid_language")
    profile, _created = AgentProfile.objects.update_or_create(user_id=user.pk, defaults={"language": language})
    return profile
