"""Tenancy (workspaces, members), plans and subscriptions, chatbots and their knowledge."""

from __future__ import annotations

import secrets

from django.conf import settings
from django.core.validators import MaxValueValidator, MinValueValidator
from django.db import models
from django.utils.translation import gettext_lazy as _
from django.utils.translation import gettext_noop

from pivra.crypto import EncryptedTextField

# The owner's texts start as these; marked for the catalogues so that a text the owner never changed
# is shown in the visitor's language (chatbots.languages.owner_text).
DEFAULT_WAITING_MESSAGE = gettext_noop("Connecting you with the team now…")
DEFAULT_BUSY_MESSAGE = gettext_noop("Our team is currently busy…")
DEFAULT_TIMEOUT_SECONDS = 180
MIN_TIMEOUT_SECONDS = 5
MAX_TIMEOUT_SECONDS = 86_400
DEFAULT_GREETING = gettext_noop("Hi! Ask me anything, or talk to a human at any time.")
DEFAULT_FALLBACK = gettext_noop("Sorry, I don't have an answer to that yet. You can ask to talk to a human.")
DEFAULT_OFFLINE_MESSAGE = gettext_noop(
    "We're not online right now. Leave your mobile number and we'll get back to you."
)
MAX_IDLE_MINUTES = 7 * 24 * 60


class Workspace(models.Model):
    name = models.CharField(max_length=120)
    slug = models.SlugField(max_length=60, unique=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name


class Membership(models.Model):
    class Role(models.TextChoices):
        OWNER = "owner", _("Owner")
        ADMIN = "admin", _("Admin")
        AGENT = "agent", _("Agent")

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="memberships")
    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="memberships")

    class Availability(models.TextChoices):
        ONLINE = "online", _("Online")
        AWAY = "away", _("Away")
        OFFLINE = "offline", _("Offline")

    role = models.CharField(max_length=10, choices=Role.choices, default=Role.AGENT)
    # The status the member chose in the sidebar. Their effective status is also derived from their
    # open console sockets: "online" only counts while at least one is open (or within the grace period).
    availability = models.CharField(max_length=10, choices=Availability.choices, default=Availability.ONLINE)
    max_live_chats = models.PositiveSmallIntegerField(
        null=True, blank=True, help_text=_("Most live chats at once; empty means unlimited.")
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints = [models.UniqueConstraint(fields=["user", "workspace"], name="membership_unique_user_workspace")]
        ordering = ["workspace", "user"]

    def __str__(self) -> str:
        return f"{self.user} in {self.workspace} ({self.role})"

    @property
    def can_manage(self) -> bool:
        return self.role in (self.Role.OWNER, self.Role.ADMIN)


class Plan(models.Model):
    code = models.SlugField(max_length=30, unique=True)
    name = models.CharField(max_length=60)
    position = models.PositiveSmallIntegerField(default=0, help_text=_("Order from cheapest to richest."))
    price_monthly_cents = models.PositiveIntegerField(default=0)
    features = models.JSONField(default=dict, blank=True, help_text=_('Feature flags, e.g. {"handoff": true}.'))
    limits = models.JSONField(default=dict, blank=True, help_text=_('Limits, e.g. {"chatbots": 3, "agents": 3}.'))
    is_public = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["position"]

    def __str__(self) -> str:
        return self.name


class Subscription(models.Model):
    class Status(models.TextChoices):
        TRIALING = "trialing", _("Trialing")
        ACTIVE = "active", _("Active")
        PAST_DUE = "past_due", _("Past due")
        CANCELED = "canceled", _("Canceled")

    workspace = models.OneToOneField(Workspace, on_delete=models.CASCADE, related_name="subscription")
    plan = models.ForeignKey(Plan, on_delete=models.PROTECT, related_name="subscriptions")
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE)
    current_period_end = models.DateTimeField(
        null=True, blank=True, help_text=_("When the paid period ends; empty means it does not lapse.")
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return f"{self.workspace}: {self.plan} ({self.status})"


def _public_key() -> str:
    return "pk_" + secrets.token_urlsafe(18)


class Chatbot(models.Model):
    class Provider(models.TextChoices):
        KNOWLEDGE_BASE = "knowledge_base", _("Knowledge base (offline)")
        OPENAI = "openai", _("OpenAI-compatible endpoint")

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="chatbots")
    name = models.CharField(max_length=80)
    public_key = models.CharField(max_length=40, unique=True, default=_public_key, editable=False)
    allowed_origins = models.JSONField(
        default=list,
        blank=True,
        help_text=_("Sites allowed to embed the widget, e.g. https://www.example.com. Empty: only Pivra's own pages."),
    )
    accent_color = models.CharField(max_length=7, default="#4f46e5")
    avatar_url = models.URLField(blank=True)
    greeting = models.CharField(max_length=500, default=DEFAULT_GREETING)

    ai_provider = models.CharField(max_length=20, choices=Provider.choices, default=Provider.KNOWLEDGE_BASE)
    llm_base_url = models.URLField(blank=True, help_text=_("Empty: PIVRA_LLM_BASE_URL."))
    # Encrypted at rest and never shown again once saved. Empty: PIVRA_LLM_API_KEY, but only when
    # llm_base_url is empty too (the platform endpoint): the platform key never leaves for a tenant URL.
    llm_api_key = EncryptedTextField(blank=True, help_text=_("Empty: PIVRA_LLM_API_KEY on the platform endpoint only."))
    llm_model = models.CharField(max_length=100, blank=True, help_text=_("Empty: PIVRA_LLM_MODEL."))
    system_prompt = models.TextField(blank=True)
    fallback_message = models.CharField(max_length=500, default=DEFAULT_FALLBACK)

    handoff_enabled = models.BooleanField(default=False)
    handoff_keywords = models.JSONField(default=list, blank=True)
    handoff_waiting_message = models.CharField(max_length=500, default=DEFAULT_WAITING_MESSAGE)
    handoff_timeout_seconds = models.PositiveIntegerField(
        default=DEFAULT_TIMEOUT_SECONDS,
        validators=[MinValueValidator(MIN_TIMEOUT_SECONDS), MaxValueValidator(MAX_TIMEOUT_SECONDS)],
    )
    handoff_busy_message = models.CharField(max_length=500, default=DEFAULT_BUSY_MESSAGE)
    handoff_offline_message = models.CharField(max_length=500, default=DEFAULT_OFFLINE_MESSAGE)
    handoff_skip_wait_when_offline = models.BooleanField(
        default=True, verbose_name=_("Don't make visitors wait when nobody is online")
    )
    office_hours_enabled = models.BooleanField(default=False, help_text=_("Off: always open."))
    office_hours_timezone = models.CharField(max_length=64, default="UTC")
    # {"mon": [["09:00", "17:00"]], ..., "sun": []}; a range may end at or before its start (crosses midnight).
    office_hours = models.JSONField(default=dict, blank=True)
    office_closed_dates = models.JSONField(default=list, blank=True, help_text=_('["2026-12-25", ...]'))
    hide_handoff_outside_hours = models.BooleanField(default=False)
    handoff_idle_minutes = models.PositiveIntegerField(
        null=True,
        blank=True,
        validators=[MinValueValidator(1), MaxValueValidator(MAX_IDLE_MINUTES)],
        help_text=_("Empty: PIVRA_HANDOFF_IDLE_MINUTES."),
    )

    class Routing(models.TextChoices):
        FIRST_CLAIM = "first_claim", _("Everyone, first claim wins")
        ROUND_ROBIN = "round_robin", _("Round robin")

    handoff_routing = models.CharField(max_length=20, choices=Routing.choices, default=Routing.FIRST_CLAIM)

    # Off by default: what a visitor types before sending is theirs until they send it.
    typing_preview = models.BooleanField(
        default=False,
        verbose_name=_("Show agents what the visitor is typing before they send it"),
    )

    class SatisfactionSurvey(models.TextChoices):
        OFF = "off", _("Don't ask")
        THUMBS = "thumbs", _("Thumbs up or down")
        FIVE = "five", _("1 to 5 stars")

    satisfaction_survey = models.CharField(
        max_length=10,
        choices=SatisfactionSurvey.choices,
        default=SatisfactionSurvey.THUMBS,
        verbose_name=_('Ask "How did we do?" after a conversation is resolved'),
    )
    # The resolved screen's "Email me the transcript" (agents can always send one from the console).
    transcript_emails = models.BooleanField(
        default=True,
        verbose_name=_("Let visitors email themselves the transcript"),
    )

    # Issue 17. The widget's language: ``language`` if the owner fixed one, else the visitor's browser
    # languages matched to settings.LANGUAGES, else ``default_language`` (chatbots.languages).
    language = models.CharField(
        max_length=10,
        blank=True,
        choices=settings.LANGUAGES,
        verbose_name=_("Always show the widget in"),
        help_text=_("Empty: the visitor's browser language when Pivra speaks it."),
    )
    default_language = models.CharField(
        max_length=10,
        default="en",
        choices=settings.LANGUAGES,
        verbose_name=_("Default language"),
        help_text=_("Used when the visitor's browser asks for none of Pivra's languages; the texts above are in it."),
    )
    # The owner's words per other language: {"fr": {"greeting": ..., "waiting": ..., "busy": ...,
    # "offline": ..., "keywords": [...]}}. A missing or empty variant falls back to the fields above
    # (chatbots.languages.owner_text); written only through chatbots.languages.chatbot_text_variants_set.
    text_variants = models.JSONField(default=dict, blank=True)

    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["workspace", "name"]

    def __str__(self) -> str:
        return self.name


class KnowledgeEntry(models.Model):
    chatbot = models.ForeignKey(Chatbot, on_delete=models.CASCADE, related_name="knowledge_entries")
    question = models.CharField(max_length=300, help_text=_("The question or topic this entry answers."))
    answer = models.TextField(max_length=5000)
    is_active = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["chatbot", "question"]
        verbose_name_plural = _("knowledge entries")

    def __str__(self) -> str:
        return self.question
