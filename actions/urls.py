"""Console pages of this app, mounted under /dashboard/ in the "dashboard" namespace."""

from __future__ import annotations

from django.urls import URLPattern, path

from actions import views

dashboard_urlpatterns: list[URLPattern] = [
    path("actions/", views.action_list, name="actions"),
    path("actions/new/", views.action_create, name="action-create"),
    path("actions/<int:pk>/", views.action_detail, name="action-detail"),
    path("actions/<int:pk>/edit/", views.action_edit, name="action-edit"),
    path("actions/<int:pk>/pause/", views.action_pause, name="action-pause"),
    path("actions/<int:pk>/resume/", views.action_resume, name="action-resume"),
    path("actions/<int:pk>/test/", views.action_test, name="action-test"),
    path("actions/<int:pk>/rotate-secret/", views.action_rotate_secret, name="action-rotate-secret"),
    path("actions/<int:pk>/delete/", views.action_delete, name="action-delete"),
    path("actions/<int:pk>/deliveries/<int:delivery_id>/", views.delivery_detail, name="action-delivery"),
    path(
        "actions/<int:pk>/deliveries/<int:delivery_id>/redeliver/",
        views.delivery_redeliver,
        name="action-redeliver",
    ),
]
