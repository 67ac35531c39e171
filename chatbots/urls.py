"""Console pages of this app, mounted under /dashboard/ in the "dashboard" namespace."""

from __future__ import annotations

from django.urls import URLPattern, path

from chatbots import views

dashboard_urlpatterns: list[URLPattern] = [
    path("", views.home, name="home"),
    path("workspace/", views.switch_workspace, name="switch-workspace"),
]
