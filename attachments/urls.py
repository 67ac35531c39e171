"""The attachment views' addresses, all under /api/ (mounted before the JSON API in pivra/urls.py)."""

from __future__ import annotations

from django.urls import path

from attachments import views

urlpatterns = [
    path("api/widget/attachments", views.widget_upload, name="widget-attachment-upload"),
    path(
        "api/console/conversations/<str:conversation_id>/attachments",
        views.console_upload,
        name="console-attachment-upload",
    ),
    path("api/attachments/<str:attachment_id>/<str:variant>", views.download, name="attachment-download"),
]
