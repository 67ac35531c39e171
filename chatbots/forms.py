"""Console forms: they only parse; saving goes through chatbots.services."""

from __future__ import annotations

import re
from typing import Any

from django import forms

from chatbots.models import MAX_TIMEOUT_SECONDS, MIN_TIMEOUT_SECONDS, Chatbot, KnowledgeEntry
from chatbots.services import normalize_origin
from pivra.errors import DomainError


def _lines(value: str) -> list[str]:
    return [part.strip() for part in re.split(r"[\n,]", value or "") if part.strip()]


class HandoffSettingsForm(forms.Form):
    enabled = forms.BooleanField(required=False, label="Handoff enabled")
    keywords = forms.CharField(
        required=False,
        label="Trigger keywords",
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text='One per line, e.g. "speak to someone". The bot then asks if the visitor wants a person.',
    )
    waiting_message = forms.CharField(max_length=500, label="Waiting message")
    timeout_seconds = forms.IntegerField(
        label="Response timeout (seconds)",
        min_value=MIN_TIMEOUT_SECONDS,
        max_value=MAX_TIMEOUT_SECONDS,
        help_text=f"How long to wait for an agent before showing the team busy message "
        f"({MIN_TIMEOUT_SECONDS} to {MAX_TIMEOUT_SECONDS} s). Default 180.",
    )
    busy_message = forms.CharField(max_length=500, label="Team busy message")

    @classmethod
    def for_chatbot(cls, chatbot: Chatbot, data: Any = None) -> HandoffSettingsForm:
        return cls(
            data=data,
            initial={
                "enabled": chatbot.handoff_enabled,
                "keywords": "\n".join(chatbot.handoff_keywords),
                "waiting_message": chatbot.handoff_waiting_message,
                "timeout_seconds": chatbot.handoff_timeout_seconds,
                "busy_message": chatbot.handoff_busy_message,
            },
        )

    def keyword_list(self) -> list[str]:
        return _lines(self.cleaned_data.get("keywords", ""))


class GeneralSettingsForm(forms.Form):
    name = forms.CharField(max_length=80)
    greeting = forms.CharField(max_length=500, widget=forms.Textarea(attrs={"rows": 2}))
    accent_color = forms.RegexField(
        regex=r"^#[0-9a-fA-F]{6}$",
        label="Accent colour",
        max_length=7,
        error_messages={"invalid": "Use a colour like #4f46e5."},
    )
    allowed_origins = forms.CharField(
        required=False,
        label="Allowed websites",
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text="One site per line, e.g. https://www.example.com. Only these sites can show the widget.",
    )
    ai_provider = forms.ChoiceField(choices=Chatbot.Provider.choices, label="AI")
    llm_base_url = forms.URLField(required=False, label="Endpoint URL", assume_scheme="https")
    llm_model = forms.CharField(required=False, max_length=100, label="Model")
    llm_api_key = forms.CharField(
        required=False,
        max_length=200,
        label="API key",
        widget=forms.PasswordInput(render_value=False),
        help_text="Leave empty to keep the current key.",
    )
    fallback_message = forms.CharField(
        max_length=500, label="Fallback answer", help_text="Said when no knowledge entry matches."
    )

    @classmethod
    def for_chatbot(cls, chatbot: Chatbot, data: Any = None) -> GeneralSettingsForm:
        return cls(
            data=data,
            initial={
                "name": chatbot.name,
                "greeting": chatbot.greeting,
                "accent_color": chatbot.accent_color,
                "allowed_origins": "\n".join(chatbot.allowed_origins),
                "ai_provider": chatbot.ai_provider,
                "llm_base_url": chatbot.llm_base_url,
                "llm_model": chatbot.llm_model,
                "fallback_message": chatbot.fallback_message,
            },
        )

    def clean_allowed_origins(self) -> str:
        """Each line must be a plain site address: they end up in the frame's Content-Security-Policy
        header, where ``https://a; script-src *`` would add a directive of its own."""
        value: str = self.cleaned_data.get("allowed_origins", "")
        problems = []
        for line in _lines(value):
            try:
                normalize_origin(line)
            except DomainError as exc:
                problems.append(exc.detail)
        if problems:
            raise forms.ValidationError(problems)
        return value

    def origin_list(self) -> list[str]:
        return _lines(self.cleaned_data.get("allowed_origins", ""))


class KnowledgeEntryForm(forms.ModelForm):
    class Meta:
        model = KnowledgeEntry
        fields = ["question", "answer", "is_active"]
        widgets = {"answer": forms.Textarea(attrs={"rows": 3})}
