"""Console pages of this app, mounted under /dashboard/ in the "dashboard" namespace."""

from __future__ import annotations

from django.urls import URLPattern

dashboard_urlpatterns: list[URLPattern] = []
