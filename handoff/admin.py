"""Staff admin for handoffs: read-only audit of the state machine (transitions go through services)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from handoff.models import Handoff


@admin.register(Handoff)
class HandoffAdmin(admin.ModelAdmin):
    list_display = [
        "conversation",
        "chatbot",
        "status",
        "trigger",
        "requested_at",
        "claimed_by",
        "claimed_at",
        "timed_out_at",
        "resolved_at",
    ]
    list_filter = ["status", "trigger", "chatbot__workspace", "chatbot", "requested_at"]
    search_fields = ["conversation__public_id", "claimed_by__username"]
    readonly_fields = [
        "conversation",
        "chatbot",
        "workspace_id",
        "status",
        "trigger",
        "requested_at",
        "deadline_at",
        "claimed_by",
        "claimed_at",
        "timed_out_at",
        "resolved_at",
        "resolved_by",
    ]
    list_select_related = ["conversation", "chatbot", "claimed_by"]
    date_hierarchy = "requested_at"

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
