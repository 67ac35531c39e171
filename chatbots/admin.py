"""Staff admin: plans and subscriptions are edited here; everything else is browsable."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from django import forms
from django.contrib import admin
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from chatbots.features import workspace_has_feature
from chatbots.forms import key_help, llm_api_key_field, llm_base_url_clean
from chatbots.models import Chatbot, KnowledgeEntry, Membership, Plan, Subscription, Workspace
from chatbots.office_hours import closed_dates_clean, timezone_clean, weekly_clean
from chatbots.plans import Feature
from chatbots.services import chatbot_llm_key_next, normalize_origin
from pivra.errors import DomainError


class MembershipInline(admin.TabularInline):
    model = Membership
    extra = 0
    autocomplete_fields = ["user"]
    readonly_fields = ["created_at"]


class SubscriptionInline(admin.StackedInline):
    model = Subscription
    can_delete = False
    readonly_fields = ["created_at", "updated_at"]


class ChatbotInline(admin.TabularInline):
    model = Chatbot
    extra = 0
    fields = ["name", "public_key", "handoff_enabled", "ai_provider"]
    readonly_fields = ["public_key"]
    show_change_link = True


@admin.register(Workspace)
class WorkspaceAdmin(admin.ModelAdmin):
    list_display = ["name", "slug", "plan_name", "subscription_status", "member_count", "created_at"]
    list_filter = ["subscription__plan", "subscription__status", "created_at"]
    search_fields = ["name", "slug", "memberships__user__username", "memberships__user__email"]
    prepopulated_fields = {"slug": ["name"]}
    readonly_fields = ["created_at", "updated_at"]
    inlines = [SubscriptionInline, MembershipInline, ChatbotInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workspace]:
        return (
            super()
            .get_queryset(request)
            .select_related("subscription__plan")
            .annotate(member_count=Count("memberships", distinct=True))
        )

    @admin.display(description="Plan", ordering="subscription__plan__position")
    def plan_name(self, obj: Workspace) -> str:
        subscription = getattr(obj, "subscription", None)
        return subscription.plan.name if subscription else "—"

    @admin.display(description="Status", ordering="subscription__status")
    def subscription_status(self, obj: Workspace) -> str:
        subscription = getattr(obj, "subscription", None)
        return subscription.get_status_display() if subscription else "—"

    @admin.display(description="Members", ordering="member_count")
    def member_count(self, obj: Workspace) -> int:
        return int(getattr(obj, "member_count", 0))


@admin.register(Membership)
class MembershipAdmin(admin.ModelAdmin):
    list_display = ["user", "workspace", "role", "availability", "max_live_chats", "created_at"]
    list_filter = ["role", "availability", "workspace"]
    search_fields = ["user__username", "user__email", "workspace__name"]
    autocomplete_fields = ["user", "workspace"]
    readonly_fields = ["created_at"]
    list_select_related = ["user", "workspace"]


@admin.register(Plan)
class PlanAdmin(admin.ModelAdmin):
    list_display = ["name", "code", "position", "price_monthly_cents", "handoff", "is_public", "updated_at"]
    list_editable = ["position", "is_public"]
    search_fields = ["name", "code"]
    readonly_fields = ["created_at", "updated_at"]

    @admin.display(boolean=True, description="Handoff")
    def handoff(self, obj: Plan) -> bool:
        return bool(obj.features.get("handoff"))


@admin.register(Subscription)
class SubscriptionAdmin(admin.ModelAdmin):
    list_display = ["workspace", "plan", "status", "current_period_end", "updated_at"]
    list_filter = ["plan", "status"]
    search_fields = ["workspace__name", "workspace__slug"]
    autocomplete_fields = ["workspace"]
    readonly_fields = ["created_at", "updated_at"]
    list_select_related = ["workspace", "plan"]
    date_hierarchy = "current_period_end"


class KnowledgeEntryInline(admin.StackedInline):
    model = KnowledgeEntry
    extra = 0
    readonly_fields = ["created_at", "updated_at"]


class ChatbotAdminForm(forms.ModelForm):
    # Write-only, as in the dashboard: the saved key never reaches the page.
    llm_api_key = llm_api_key_field(label="LLM API key")
    clear_llm_api_key = forms.BooleanField(required=False, label="Remove the saved API key")

    class Meta:
        model = Chatbot
        fields = "__all__"  # noqa: DJ007 - the ModelAdmin's fieldsets choose what is shown

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.initial.pop("llm_api_key", None)
        self.fields["llm_api_key"].help_text = key_help(self.instance)

    def clean_llm_base_url(self) -> str:
        return llm_base_url_clean(self.cleaned_data.get("llm_base_url") or "")

    def clean_llm_api_key(self) -> str | None:
        """A new key replaces the saved one; "Remove" clears it; empty gives None, resolved in clean()."""
        if self.data.get(self.add_prefix("clear_llm_api_key")):
            return ""
        return (self.cleaned_data.get("llm_api_key") or "").strip() or None

    def clean_allowed_origins(self) -> list[str]:
        """The same origins the dashboard accepts, normalised: they end up in the frame's
        Content-Security-Policy header, so ``*`` or ``https://a; script-src *`` must never get in."""
        value = self.cleaned_data.get("allowed_origins") or []
        if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
            raise forms.ValidationError('Give a list of site addresses, e.g. ["https://www.example.com"].')
        origins: set[str] = set()
        problems: list[str] = []
        for item in value:
            if not item.strip():
                continue
            try:
                origins.add(normalize_origin(item))
            except DomainError as exc:
                problems.append(exc.detail)
        if problems:
            raise forms.ValidationError(problems)
        return sorted(origins)

    def _checked(self, name: str, check: Callable[[Any], Any]) -> Any:
        """Office hours get the dashboard's checks here too (staff type raw JSON)."""
        value = self.cleaned_data.get(name)
        try:
            return check(value)
        except DomainError as exc:
            raise forms.ValidationError(exc.detail) from None

    def clean_office_hours_timezone(self) -> str:
        return str(self._checked("office_hours_timezone", timezone_clean))

    def clean_office_hours(self) -> dict[str, list[list[str]]]:
        return dict(self._checked("office_hours", lambda value: weekly_clean(value or {})))

    def clean_office_closed_dates(self) -> list[str]:
        return list(self._checked("office_closed_dates", lambda value: closed_dates_clean(value or [])))

    def clean(self) -> dict[str, Any]:
        data = super().clean() or {}
        if "llm_api_key" in data:
            # Empty keeps the saved key only while the URL stays: the service's rule, for staff too.
            data["llm_api_key"] = chatbot_llm_key_next(
                chatbot=self.instance,
                llm_base_url=data.get("llm_base_url", self.instance.llm_base_url) or "",
                llm_api_key=data["llm_api_key"],
            )
        workspace = data.get("workspace")
        # The same gate as the dashboard: staff cannot switch handoff on for a plan without it.
        if (
            data.get("handoff_enabled")
            and workspace is not None
            and not workspace_has_feature(workspace=workspace, feature=Feature.HANDOFF)
        ):
            self.add_error("handoff_enabled", "Human handoff needs the Starter plan or above for this workspace.")
        return data


@admin.register(Chatbot)
class ChatbotAdmin(admin.ModelAdmin):
    form = ChatbotAdminForm
    list_display = ["name", "workspace", "public_key", "ai_provider", "handoff_enabled", "created_at"]
    list_filter = ["handoff_enabled", "ai_provider", "workspace"]
    search_fields = ["name", "public_key", "workspace__name"]
    autocomplete_fields = ["workspace"]
    readonly_fields = ["public_key", "created_at", "updated_at"]
    list_select_related = ["workspace"]
    inlines = [KnowledgeEntryInline]
    fieldsets = [
        (
            None,
            {
                "fields": [
                    "workspace",
                    "name",
                    "public_key",
                    "allowed_origins",
                    "accent_color",
                    "avatar_url",
                    "greeting",
                ]
            },
        ),
        (
            "AI",
            {
                "fields": [
                    "ai_provider",
                    "llm_base_url",
                    "llm_api_key",
                    "clear_llm_api_key",
                    "llm_model",
                    "system_prompt",
                    "fallback_message",
                ]
            },
        ),
        (
            "Human handoff",
            {
                "fields": [
                    "handoff_enabled",
                    "handoff_keywords",
                    "handoff_waiting_message",
                    "handoff_timeout_seconds",
                    "handoff_busy_message",
                    "handoff_offline_message",
                    "handoff_skip_wait_when_offline",
                    "handoff_idle_minutes",
                    "handoff_routing",
                ]
            },
        ),
        (
            "Office hours",
            {
                "fields": [
                    "office_hours_enabled",
                    "office_hours_timezone",
                    "office_hours",
                    "office_closed_dates",
                    "hide_handoff_outside_hours",
                ]
            },
        ),
        ("Audit", {"fields": ["created_at", "updated_at"]}),
    ]


@admin.register(KnowledgeEntry)
class KnowledgeEntryAdmin(admin.ModelAdmin):
    list_display = ["question", "chatbot", "is_active", "updated_at"]
    list_filter = ["is_active", "chatbot__workspace", "chatbot"]
    search_fields = ["question", "answer", "chatbot__name"]
    autocomplete_fields = ["chatbot"]
    readonly_fields = ["created_at", "updated_at"]
    list_select_related = ["chatbot"]
