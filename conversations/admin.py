"""Staff admin for visitors and conversations: browsable, with the event log inline and read-only
(the log is append-only: changes go through the services)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from conversations.models import Conversation, Event, Visitor


class EventInline(admin.TabularInline):
    model = Event
    extra = 0
    can_delete = False
    fields = ["seq", "kind", "author", "agent_name", "text", "created_at"]
    readonly_fields = ["seq", "kind", "author", "agent_name", "text", "created_at"]
    ordering = ["seq"]

    def has_add_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False


@admin.register(Conversation)
class ConversationAdmin(admin.ModelAdmin):
    list_display = ["public_id", "chatbot", "status", "last_seq", "created_at", "closed_at"]
    list_filter = ["status", "chatbot__workspace", "chatbot", "created_at"]
    search_fields = ["public_id", "visitor__public_id", "events__text", "lead__phone"]
    readonly_fields = [
        "public_id",
        "chatbot",
        "visitor",
        "status",
        "last_seq",
        "lead",
        "created_at",
        "updated_at",
        "closed_at",
    ]
    list_select_related = ["chatbot"]
    date_hierarchy = "created_at"
    inlines = [EventInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Visitor)
class VisitorAdmin(admin.ModelAdmin):
    list_display = ["public_id", "chatbot", "locale", "current_page", "first_seen_at", "last_seen_at"]
    list_filter = ["chatbot__workspace", "chatbot", "locale"]
    search_fields = ["public_id", "current_page", "user_agent"]
    readonly_fields = ["public_id", "chatbot", "locale", "user_agent", "current_page", "first_seen_at", "last_seen_at"]
    list_select_related = ["chatbot"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False


@admin.register(Event)
class EventAdmin(admin.ModelAdmin):
    list_display = ["conversation", "seq", "kind", "author", "agent_name", "short_text", "created_at"]
    list_filter = ["kind", "author", "created_at"]
    search_fields = ["text", "conversation__public_id", "client_id"]
    readonly_fields = [
        "conversation",
        "seq",
        "kind",
        "author",
        "text",
        "agent",
        "agent_name",
        "client_id",
        "data",
        "created_at",
    ]
    list_select_related = ["conversation"]

    @admin.display(description="Text")
    def short_text(self, obj: Event) -> str:
        return obj.text if len(obj.text) <= 80 else obj.text[:79] + "…"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object | None = None) -> bool:
        return False
