"""Console pages of this app, mounted under /dashboard/ in the "dashboard" namespace."""

from __future__ import annotations

from django.urls import URLPattern, path

from canned import views

dashboard_urlpatterns: list[URLPattern] = [
    path("canned-replies/", views.canned_list, name="canned"),
    path("canned-replies/new/", views.canned_create, name="canned-create"),
    path("canned-replies/<int:pk>/edit/", views.canned_edit, name="canned-edit"),
    path("canned-replies/<int:pk>/delete/", views.canned_delete, name="canned-delete"),
]
