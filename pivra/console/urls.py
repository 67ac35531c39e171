"""Console pages of this app, mounted under /dashboard/ in the "dashboard" namespace."""

from __future__ import annotations

from django.urls import URLPattern, path, register_converter

from pivra.console import views


class ExportFormat:
    regex = "csv|json"

    def to_python(self, value: str) -> str:
        return value

    def to_url(self, value: str) -> str:
        return value


register_converter(ExportFormat, "export_format")

dashboard_urlpatterns: list[URLPattern] = [
    path("conversations/", views.conversation_list, name="conversations"),
    path("conversations/export.<export_format:fmt>", views.conversations_export, name="conversations-export"),
    path("conversations/<uuid:public_id>/", views.conversation_detail, name="conversation"),
    path("conversations/<uuid:public_id>/state", views.conversation_state, name="conversation-state"),
    path(
        "conversations/<uuid:public_id>/export.<export_format:fmt>",
        views.conversation_export,
        name="conversation-export",
    ),
    path("analytics/", views.analytics_view, name="analytics"),
]
