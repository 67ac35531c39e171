"""Console forms: they only parse; saving goes through chatbots.services."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.conf import settings

from chatbots.models import MAX_TIMEOUT_SECONDS, MIN_TIMEOUT_SECONDS, Chatbot, KnowledgeEntry
from chatbots.services import normalize_origin
from pivra.crypto import secret_unreadable
from pivra.errors import DomainError
from pivra.outbound import tenant_url_refusal

KEY_SET = (
    "•••• set. Leave empty to keep it, or type a new key to replace it. "
    "Changing the URL removes the saved key: type it again with the new URL."
)
KEY_NOT_SET = (
    "Not set. A custom endpoint URL needs its own key: the platform key is only sent to the platform endpoint."
)
KEY_UNREADABLE = (
    "A key is saved but cannot be decrypted (the encryption key changed): type the key again, or ask the operator."
)


def llm_api_key_field(*, label: str) -> forms.CharField:
    """The AI key as a write-only field (dashboard and admin): the saved key is never sent back to
    the browser, not even masked; an empty field keeps it."""
    return forms.CharField(
        required=False,
        max_length=200,
        label=label,
        widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "new-password"}),
        help_text=KEY_NOT_SET,
    )


def llm_base_url_clean(url: str) -> str:
    """A tenant's AI endpoint, checked like a webhook URL: no loopback, private or link-local
    address. The operator's own PIVRA_LLM_BASE_URL is always accepted (it may be a local server)."""
    url = url.strip()
    platform = settings.LLM_BASE_URL.strip()
    if not url or (platform and url.rstrip("/") == platform.rstrip("/")):
        return url
    refusal = tenant_url_refusal(url)
    if refusal:
        raise forms.ValidationError(refusal)
    return url


def key_help(chatbot: Chatbot) -> str:
    if secret_unreadable(chatbot.llm_api_key):
        return KEY_UNREADABLE
    return KEY_SET if chatbot.llm_api_key else KEY_NOT_SET


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
    llm_api_key = llm_api_key_field(label="API key")
    clear_llm_api_key = forms.BooleanField(required=False, label="Remove the saved API key")
    fallback_message = forms.CharField(
        max_length=500, label="Fallback answer", help_text="Said when no knowledge entry matches."
    )

    @classmethod
    def for_chatbot(cls, chatbot: Chatbot, data: Any = None) -> GeneralSettingsForm:
        form = cls(
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
        form.fields["llm_api_key"].help_text = key_help(chatbot)
        if not chatbot.llm_api_key and not secret_unreadable(chatbot.llm_api_key):
            del form.fields["clear_llm_api_key"]  # nothing to remove
        return form

    def clean_llm_base_url(self) -> str:
        return llm_base_url_clean(self.cleaned_data.get("llm_base_url") or "")

    def key_change(self) -> str | None:
        """The key to save: a new one, "" to remove it, or None to keep the saved one (the service
        still removes it when the URL changed)."""
        if self.cleaned_data.get("clear_llm_api_key"):
            return ""
        return (self.cleaned_data.get("llm_api_key") or "").strip() or None

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
