from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from actions.models import OutboxEvent


@admin.register(OutboxEvent)
class OutboxEventAdmin(admin.ModelAdmin):
    list_display = ["type", "id", "workspace_id", "created_at", "dispatched_at"]
    list_filter = ["type", "created_at"]
    search_fields = ["id", "type"]
    readonly_fields = ["id", "type", "workspace_id", "chatbot_id", "payload", "created_at", "dispatched_at"]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False
