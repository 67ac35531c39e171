"""Console forms: they only parse; saving goes through chatbots.services."""

from __future__ import annotations

import re
from typing import Any

from django import forms
from django.conf import settings
from django.forms.utils import flatatt
from django.utils import translation
from django.utils.html import format_html, format_html_join
from django.utils.safestring import SafeString, mark_safe
from django.utils.text import format_lazy
from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from chatbots.handoff_options import HandoffOptions
from chatbots.languages import OWNER_TEXT_MAX, OWNER_TEXTS
from chatbots.models import MAX_IDLE_MINUTES, MAX_TIMEOUT_SECONDS, MIN_TIMEOUT_SECONDS, Chatbot, KnowledgeEntry
from chatbots.office_hours import (
    DAYS,
    closed_dates_parse,
    day_ranges_parse,
    timezone_clean,
    timezone_names,
    weekly_as_text,
    weekly_clean,
)
from chatbots.services import MAX_KEYWORD_LENGTH, MAX_KEYWORDS, normalize_origin
from pivra.crypto import secret_unreadable
from pivra.errors import DomainError
from pivra.outbound import tenant_url_refusal

KEY_SET = _(
    "•••• set. Leave empty to keep it, or type a new key to replace it. "
    "Changing the URL removes the saved key: type it again with the new URL."
)
KEY_NOT_SET = _(
    "Not set. A custom endpoint URL needs its own key: the platform key is only sent to the platform endpoint."
)
KEY_UNREADABLE = _(
    "A key is saved but cannot be decrypted (the encryption key changed): type the key again, or ask the operator."
)


def llm_api_key_field(*, label: Any) -> forms.CharField:
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


def key_help(chatbot: Chatbot) -> Any:
    if secret_unreadable(chatbot.llm_api_key):
        return KEY_UNREADABLE
    return KEY_SET if chatbot.llm_api_key else KEY_NOT_SET


class PlainSelect(forms.Select):
    """A <select> whose options are written in Python: the time-zone list has ~600 of them, and the
    template-per-option rendering of forms.Select made the settings page several times slower."""

    def render(self, name: str, value: Any, attrs: Any = None, renderer: Any = None) -> SafeString:
        chosen = "" if value is None else str(value)
        final = self.build_attrs(self.attrs, attrs)
        options = format_html_join(
            "",
            '<option value="{}"{}>{}</option>',
            ((str(v), mark_safe(" selected") if str(v) == chosen else "", label) for v, label in self.choices),
        )
        return format_html('<select name="{}"{}>{}</select>', name, flatatt(final), options)


def _lines(value: str) -> list[str]:
    return [part.strip() for part in re.split(r"[\n,]", value or "") if part.strip()]


class HandoffSettingsForm(forms.Form):
    enabled = forms.BooleanField(required=False, label=_("Handoff enabled"))
    keywords = forms.CharField(
        required=False,
        label=_("Trigger keywords"),
        widget=forms.Textarea(attrs={"rows": 5}),
        help_text=_('One per line, e.g. "speak to someone". The bot then asks if the visitor wants a person.'),
    )
    waiting_message = forms.CharField(max_length=500, label=_("Waiting message"))
    timeout_seconds = forms.IntegerField(
        label=_("Response timeout (seconds)"),
        min_value=MIN_TIMEOUT_SECONDS,
        max_value=MAX_TIMEOUT_SECONDS,
        help_text=format_lazy(
            _("How long to wait for an agent before showing the team busy message ({min} to {max} s). Default 180."),
            min=MIN_TIMEOUT_SECONDS,
            max=MAX_TIMEOUT_SECONDS,
        ),
    )
    busy_message = forms.CharField(max_length=500, label=_("Team busy message"))
    # Issue 15: availability, office hours, idle and routing (saved by chatbot_update_handoff_options).
    handoff_skip_wait_when_offline = forms.BooleanField(
        required=False,
        label=_("Don't make visitors wait when nobody is online"),
        help_text=_(
            "With no team member Online, a request goes straight to the offline message and the "
            "mobile-number form instead of waiting for the response timeout."
        ),
    )
    handoff_offline_message = forms.CharField(
        max_length=500,
        label=_("Offline message"),
        widget=forms.Textarea(attrs={"rows": 2}),
        help_text=_("Shown instead of the team busy message outside office hours or when nobody is online."),
    )
    handoff_idle_minutes = forms.IntegerField(
        required=False,
        min_value=1,
        max_value=MAX_IDLE_MINUTES,
        label=_("Resolve a silent live chat after (minutes)"),
        help_text=_(
            "A live chat with no message from either side for this long is resolved. "
            "Empty: the platform default (PIVRA_HANDOFF_IDLE_MINUTES)."
        ),
    )
    handoff_routing = forms.ChoiceField(
        choices=Chatbot.Routing.choices,
        label=_("Routing"),
        error_messages={"invalid_choice": _("Choose first claim or round robin.")},
        help_text=_(
            "Round robin offers each new request to the online agent with the fewest live chats "
            "first (30 s each), then to everyone."
        ),
    )
    office_hours_enabled = forms.BooleanField(
        required=False, label=_("Use office hours"), help_text=_("Off: always open.")
    )
    office_hours_timezone = forms.ChoiceField(
        choices=(),
        widget=PlainSelect,
        label=_("Time zone"),
        error_messages={"invalid_choice": _("Choose a time zone from the list, e.g. Europe/Paris.")},
    )
    hours_mon = forms.CharField(required=False, max_length=200, label=_("Monday"))
    hours_tue = forms.CharField(required=False, max_length=200, label=_("Tuesday"))
    hours_wed = forms.CharField(required=False, max_length=200, label=_("Wednesday"))
    hours_thu = forms.CharField(required=False, max_length=200, label=_("Thursday"))
    hours_fri = forms.CharField(required=False, max_length=200, label=_("Friday"))
    hours_sat = forms.CharField(required=False, max_length=200, label=_("Saturday"))
    hours_sun = forms.CharField(required=False, max_length=200, label=_("Sunday"))
    office_closed_dates = forms.CharField(
        required=False,
        max_length=4000,
        label=_("Closed dates"),
        widget=forms.Textarea(attrs={"rows": 3, "placeholder": "2026-12-25"}),
        help_text=_("One date per line (YYYY-MM-DD), in the chatbot's time zone: closed all day."),
    )
    hide_handoff_outside_hours = forms.BooleanField(
        required=False,
        label=_("Hide “Talk to a human” outside office hours"),
        help_text=_("Outside hours the widget shows no button and trigger keywords do not offer a person."),
    )
    # Issue 16: the live typing preview (saved by chatbot_update_handoff_options).
    typing_preview = forms.BooleanField(
        required=False,
        label=_("Show agents what the visitor is typing before they send it"),
        help_text=_(
            "Off by default. On: while a visitor writes to a person, the conversation page shows their "
            "unsent text as a live preview, clearly labelled. Off: agents only see “Visitor is typing…” "
            "and the text stays on the visitor’s screen until they send it."  # noqa: RUF001 (typographic, as shown)
        ),
    )

    # Issue 16: "How did we do?" after a resolve (saved by chatbot_update_handoff_options).
    satisfaction_survey = forms.ChoiceField(
        required=False,  # absent from a post: the saved choice stays
        choices=Chatbot.SatisfactionSurvey.choices,
        label=_("Ask “How did we do?” after a conversation is resolved"),
        error_messages={"invalid_choice": _("Choose don't ask, thumbs or 1 to 5 stars.")},
        help_text=_(
            "The widget asks on its resolved screen, with an optional comment. Ratings show in "
            "the thread and on the Analytics page, and fire the conversation.rated event."
        ),
    )
    # Issue 16: the resolved screen's "Email me the transcript" (saved by chatbot_update_handoff_options).
    transcript_emails = forms.BooleanField(
        required=False,
        label=_("Let visitors email themselves the transcript"),
        help_text=_(
            "On: the widget's resolved screen offers “Email me the transcript”. Agents can "
            "always email a transcript from the conversation page."
        ),
    )

    BASIC = ("keywords", "waiting_message", "timeout_seconds", "busy_message")
    AVAILABILITY = ("handoff_offline_message", "handoff_idle_minutes", "handoff_routing")
    DAY_FIELDS = tuple(f"hours_{day}" for day in DAYS)

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.week_error = ""
        zone_field = self.fields["office_hours_timezone"]
        assert isinstance(zone_field, forms.ChoiceField)
        zone_field.choices = [(name, name) for name in timezone_names()]
        default_idle = getattr(settings, "HANDOFF_IDLE_MINUTES", None)
        if default_idle:
            self.fields["handoff_idle_minutes"].help_text = gettext(
                "A live chat with no message from either side for this long is resolved. "
                "Empty: the platform default (%(minutes)s minutes)."
            ) % {"minutes": default_idle}
        for day in DAYS:
            self.fields[f"hours_{day}"].widget.attrs.update({"placeholder": gettext("Closed"), "autocomplete": "off"})

    @classmethod
    def for_chatbot(cls, chatbot: Chatbot, data: Any = None) -> HandoffSettingsForm:
        week = weekly_as_text(weekly=chatbot.office_hours)
        return cls(
            data=data,
            initial={
                "enabled": chatbot.handoff_enabled,
                "keywords": "\n".join(chatbot.handoff_keywords),
                "waiting_message": chatbot.handoff_waiting_message,
                "timeout_seconds": chatbot.handoff_timeout_seconds,
                "busy_message": chatbot.handoff_busy_message,
                "handoff_skip_wait_when_offline": chatbot.handoff_skip_wait_when_offline,
                "handoff_offline_message": chatbot.handoff_offline_message,
                "handoff_idle_minutes": chatbot.handoff_idle_minutes,
                "handoff_routing": chatbot.handoff_routing,
                "office_hours_enabled": chatbot.office_hours_enabled,
                "office_hours_timezone": chatbot.office_hours_timezone,
                **{f"hours_{day}": week[day] for day in DAYS},
                "office_closed_dates": "\n".join(str(d) for d in chatbot.office_closed_dates or []),
                "hide_handoff_outside_hours": chatbot.hide_handoff_outside_hours,
                "typing_preview": chatbot.typing_preview,
                "satisfaction_survey": chatbot.satisfaction_survey,
                "transcript_emails": chatbot.transcript_emails,
            },
        )

    def fields_named(self, names: tuple[str, ...]) -> list[forms.BoundField]:
        return [self[name] for name in names]

    def basic_fields(self) -> list[forms.BoundField]:
        return self.fields_named(self.BASIC)

    def availability_fields(self) -> list[forms.BoundField]:
        return self.fields_named(self.AVAILABILITY)

    def day_fields(self) -> list[forms.BoundField]:
        return self.fields_named(self.DAY_FIELDS)

    def keyword_list(self) -> list[str]:
        return _lines(self.cleaned_data.get("keywords", ""))

    def clean_office_hours_timezone(self) -> str:
        try:
            return timezone_clean(self.cleaned_data.get("office_hours_timezone"))
        except DomainError as exc:
            raise forms.ValidationError(exc.detail) from None

    def clean_office_closed_dates(self) -> list[str]:
        try:
            return closed_dates_parse(text=self.cleaned_data.get("office_closed_dates") or "")
        except DomainError as exc:
            raise forms.ValidationError(exc.detail) from None

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        weekly: dict[str, list[list[str]]] = {}
        for day in DAYS:
            name = f"hours_{day}"
            if name not in data:
                continue  # already refused (too long)
            try:
                weekly[day] = [list(pair) for pair in day_ranges_parse(day=day, text=data[name] or "")]
            except DomainError as exc:
                self.add_error(name, exc.detail)
        if len(weekly) == len(DAYS):
            try:
                data["office_hours"] = weekly_clean(weekly)
            except DomainError as exc:
                self.add_error(None, gettext("Office hours: %(problem)s") % {"problem": exc.detail})
                self.week_error = exc.detail  # shown again beside the days
        return data

    def options(self) -> HandoffOptions:
        data = self.cleaned_data
        return HandoffOptions(
            offline_message=data["handoff_offline_message"],
            skip_wait_when_offline=data["handoff_skip_wait_when_offline"],
            hide_outside_hours=data["hide_handoff_outside_hours"],
            idle_minutes=data["handoff_idle_minutes"],
            routing=data["handoff_routing"],
            office_hours_enabled=data["office_hours_enabled"],
            timezone=data["office_hours_timezone"],
            weekly=data["office_hours"],
            closed_dates=data["office_closed_dates"],
            typing_preview=data["typing_preview"],
            satisfaction_survey=data.get("satisfaction_survey") or None,
            transcript_emails=bool(data.get("transcript_emails")),
        )


class GeneralSettingsForm(forms.Form):
    name = forms.CharField(max_length=80, label=_("Name"))
    greeting = forms.CharField(max_length=500, label=_("Greeting"), widget=forms.Textarea(attrs={"rows": 2}))
    accent_color = forms.RegexField(
        regex=r"^#[0-9a-fA-F]{6}$",
        label=_("Accent colour"),
        max_length=7,
        error_messages={"invalid": _("Use a colour like #4f46e5.")},
    )
    allowed_origins = forms.CharField(
        required=False,
        label=_("Allowed websites"),
        widget=forms.Textarea(attrs={"rows": 3}),
        help_text=_("One site per line, e.g. https://www.example.com. Only these sites can show the widget."),
    )
    ai_provider = forms.ChoiceField(choices=Chatbot.Provider.choices, label=_("AI"))
    llm_base_url = forms.URLField(required=False, label=_("Endpoint URL"), assume_scheme="https")
    llm_model = forms.CharField(required=False, max_length=100, label=_("Model"))
    llm_api_key = llm_api_key_field(label=_("API key"))
    clear_llm_api_key = forms.BooleanField(required=False, label=_("Remove the saved API key"))
    fallback_message = forms.CharField(
        max_length=500, label=_("Fallback answer"), help_text=_("Said when no knowledge entry matches.")
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


def language_choices() -> list[tuple[str, str]]:
    """settings.LANGUAGES as "French (Français)": the name in the console's language, then its own."""
    choices = []
    for code, local in settings.LANGUAGES:
        name = str(translation.get_language_info(code)["name_translated"])
        choices.append((code, name if name == local else f"{name} ({local})"))
    return choices


class LanguageSettingsForm(forms.Form):
    """The Language section (saved by chatbot_update_languages)."""

    language = forms.ChoiceField(
        required=False,
        label=_("Widget language"),
        error_messages={"invalid_choice": _("Choose one of the languages offered.")},
        help_text=_(
            "Follow the visitor's browser: the widget speaks the first of the visitor's languages Pivra "
            "speaks, else the default language."
        ),
    )
    default_language = forms.ChoiceField(
        label=_("Default language"),
        error_messages={"invalid_choice": _("Choose one of the languages offered.")},
        help_text=_("The language your greeting, waiting, team busy and offline messages above are written in."),
    )

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        choices = language_choices()
        fixed = self.fields["language"]
        default = self.fields["default_language"]
        assert isinstance(fixed, forms.ChoiceField) and isinstance(default, forms.ChoiceField)
        fixed.choices = [("", _("Follow the visitor's browser")), *choices]
        default.choices = choices

    @classmethod
    def for_chatbot(cls, chatbot: Chatbot, data: Any = None) -> LanguageSettingsForm:
        return cls(data=data, initial={"language": chatbot.language, "default_language": chatbot.default_language})


VARIANT_HELP = _("Empty: the default text is used.")


class TextVariantsForm(forms.Form):
    """The owner's texts in one language other than the default (saved by chatbot_text_variants_set).
    Every field may stay empty: the default text is then used."""

    greeting = forms.CharField(
        required=False, max_length=OWNER_TEXT_MAX, label=_("Greeting"), widget=forms.Textarea(attrs={"rows": 2})
    )
    waiting = forms.CharField(
        required=False, max_length=OWNER_TEXT_MAX, label=_("Waiting message"), widget=forms.Textarea(attrs={"rows": 2})
    )
    busy = forms.CharField(
        required=False,
        max_length=OWNER_TEXT_MAX,
        label=_("Team busy message"),
        widget=forms.Textarea(attrs={"rows": 2}),
    )
    offline = forms.CharField(
        required=False, max_length=OWNER_TEXT_MAX, label=_("Offline message"), widget=forms.Textarea(attrs={"rows": 2})
    )
    keywords = forms.CharField(
        required=False,
        max_length=MAX_KEYWORDS * (MAX_KEYWORD_LENGTH + 2),
        label=_("Trigger keywords"),
        widget=forms.Textarea(attrs={"rows": 4}),
    )
    TEXTS = ("greeting", "waiting", "busy", "offline")

    @classmethod
    def for_chatbot(cls, chatbot: Chatbot, language: str, data: Any = None) -> TextVariantsForm:
        variants = chatbot.text_variants if isinstance(chatbot.text_variants, dict) else {}
        variant = variants.get(language) if isinstance(variants.get(language), dict) else {}
        assert isinstance(variant, dict)
        keywords = variant.get("keywords")
        initial: dict[str, str] = {name: str(variant.get(name) or "") for name in cls.TEXTS}
        initial["keywords"] = "\n".join(k for k in keywords if isinstance(k, str)) if isinstance(keywords, list) else ""
        # Prefixed: the General and Handoff forms on the same page have a greeting and keywords too (ids must differ).
        form = cls(data=data, initial=initial, prefix="texts")
        for name, (field, _shipped) in OWNER_TEXTS.items():
            form.fields[name].widget.attrs["placeholder"] = str(getattr(chatbot, field))
            form.fields[name].help_text = VARIANT_HELP
        form.fields["keywords"].widget.attrs["placeholder"] = "\n".join(chatbot.handoff_keywords)
        form.fields["keywords"].help_text = _(
            "One per line. Visitors in this language can also use the default keywords. "
            "Empty: only the default keywords are used."
        )
        return form

    def texts(self) -> dict[str, str]:
        return {name: self.cleaned_data.get(name) or "" for name in self.TEXTS}

    def keyword_list(self) -> list[str]:
        return _lines(self.cleaned_data.get("keywords", ""))
