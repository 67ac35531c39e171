"""Console pages of this app, mounted under /dashboard/ in the "dashboard" namespace."""

from __future__ import annotations

from django.urls import URLPattern, path

from notifications import views

dashboard_urlpatterns: list[URLPattern] = [
    path("sw.js", views.service_worker, name="service-worker"),
    path("notifications/open/<uuid:public_id>/", views.open_conversation, name="notification-open"),
]
