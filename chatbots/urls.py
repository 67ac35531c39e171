"""Console pages of this app, mounted under /dashboard/ in the "dashboard" namespace."""

from __future__ import annotations

from django.urls import URLPattern, path

from chatbots import views

dashboard_urlpatterns: list[URLPattern] = [
    path("", views.home, name="home"),
    path("workspace/", views.switch_workspace, name="switch-workspace"),
    path("settings/", views.chatbot_settings, name="chatbot-settings"),
    path("settings/knowledge/", views.knowledge_save, name="knowledge-save"),
    path("settings/knowledge/<int:entry_id>/delete/", views.knowledge_delete, name="knowledge-delete"),
]
