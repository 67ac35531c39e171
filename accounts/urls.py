"""Console pages of this app, mounted under /dashboard/ in the "dashboard" namespace."""

from __future__ import annotations

from django.urls import URLPattern, path

from accounts import views

dashboard_urlpatterns: list[URLPattern] = [
    path("profile/", views.profile, name="profile"),
]
