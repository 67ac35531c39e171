"""Staff admin: a workspace's canned replies, to look at (and delete); owners edit them on the dashboard,
where ``canned.services`` checks the shortcut and the placeholders."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from canned.models import CannedReply


@admin.register(CannedReply)
class CannedReplyAdmin(admin.ModelAdmin):
    list_display = ("shortcut", "title", "workspace", "updated_at")
    list_select_related = ("workspace",)
    search_fields = ("shortcut", "title", "workspace__name")
    readonly_fields = ("workspace", "shortcut", "title", "text", "created_by", "created_at", "updated_at")

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: CannedReply | None = None) -> bool:
        return False
