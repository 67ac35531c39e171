"""Console pages of this app, mounted under /dashboard/ in the "dashboard" namespace."""

from __future__ import annotations

from django.urls import URLPattern, path

from chatbots import team_views, views

dashboard_urlpatterns: list[URLPattern] = [
    path("", views.home, name="home"),
    path("workspace/", views.switch_workspace, name="switch-workspace"),
    path("availability/", team_views.set_availability, name="availability"),
    path("team/presence/", team_views.team_presence, name="team-presence"),
    path("team/<int:membership_id>/capacity/", team_views.member_capacity, name="member-capacity"),
    path("settings/", views.chatbot_settings, name="chatbot-settings"),
    path("settings/knowledge/", views.knowledge_save, name="knowledge-save"),
    path("settings/knowledge/<int:entry_id>/delete/", views.knowledge_delete, name="knowledge-delete"),
]
