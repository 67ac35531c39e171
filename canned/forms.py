"""The canned reply form: it parses input; ``canned.services`` decides what is valid."""

from __future__ import annotations

from typing import Any

from django import forms
from django.utils.translation import gettext_lazy as _

from canned.services import SHORTCUT_MAX, TITLE_MAX, canned_text_max


class CannedReplyForm(forms.Form):
    shortcut = forms.CharField(max_length=SHORTCUT_MAX + 1, label=_("Shortcut"))  # + 1: a leading "/" is dropped
    title = forms.CharField(max_length=TITLE_MAX, required=False, label=_("Title"))
    text = forms.CharField(widget=forms.Textarea(attrs={"rows": 8}), label=_("Reply"))

    # The service's refusal codes, shown under the field they are about.
    ERROR_FIELDS = {
        "invalid_shortcut": "shortcut",
        "shortcut_taken": "shortcut",
        "invalid_title": "title",
        "invalid_text": "text",
        "unknown_placeholder": "text",
    }

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # As long as a message, read now: the setting may differ from when this module was imported.
        self.fields["text"] = forms.CharField(
            max_length=canned_text_max(), widget=forms.Textarea(attrs={"rows": 8}), label=_("Reply")
        )
