"""The agent's profile form: it only parses; accounts.languages.agent_language_set saves."""

from __future__ import annotations

from typing import Any

from django import forms
from django.conf import settings
from django.utils.translation import gettext_lazy as _


class AgentLanguageForm(forms.Form):
    language = forms.ChoiceField(
        required=False,
        label=_("Console language"),
        error_messages={"invalid_choice": _("Choose one of the languages offered.")},
        help_text=_("Browser default: the console follows the language your browser asks for."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["language"]
        assert isinstance(field, forms.ChoiceField)
        # Each language in its own name, so an agent finds theirs whatever the console speaks now.
        field.choices = [("", _("Browser default")), *settings.LANGUAGES]
