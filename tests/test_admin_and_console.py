from __future__ import annotations

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

from chatbots.models import Chatbot, KnowledgeEntry, Membership, Workspace
from tests.factories import Personas

pytestmark = pytest.mark.django_db


def test_every_admin_changelist_and_add_page_renders(client: Client, staff_user: User, personas: Personas) -> None:
    client.force_login(staff_user)
    for model, model_admin in admin.site._registry.items():
        meta = model._meta
        changelist = reverse(f"admin:{meta.app_label}_{meta.model_name}_changelist")
        assert client.get(changelist).status_code == 200, changelist
        assert client.get(changelist, {"q": "a"}).status_code == 200, changelist
        if model_admin.has_add_permission(_request_for(staff_user)):
            add = reverse(f"admin:{meta.app_label}_{meta.model_name}_add")
            assert client.get(add).status_code == 200, add
    change = reverse("admin:chatbots_workspace_change", args=[personas.workspace.pk])
    assert b"Subscription" in client.get(change).content


def _request_for(user: User):
    from django.test import RequestFactory

    request = RequestFactory().get("/")
    request.user = user
    return request


def test_seed_demo_is_idempotent_and_sets_the_password() -> None:
    call_command("seed_demo", "--password", "first-pass")
    call_command("seed_demo", "--password", "second-pass")
    workspace = Workspace.objects.get(slug="demo")
    assert workspace.subscription.plan.code == "starter"
    bot = Chatbot.objects.get(workspace=workspace, name="Demo bot")
    assert bot.handoff_enabled is True
    assert KnowledgeEntry.objects.filter(chatbot=bot).count() == 5
    assert Chatbot.objects.filter(workspace=workspace).count() == 1
    roles = dict(Membership.objects.filter(workspace=workspace).values_list("user__username", "role"))
    assert roles == {"admin": "owner", "alice": "agent", "bob": "agent"}
    assert User.objects.get(username="alice").check_password("second-pass")
    assert User.objects.get(username="admin").is_staff


def test_the_dashboard_requires_login(client: Client) -> None:
    response = client.get("/dashboard/")
    assert response.status_code == 302
    assert response["Location"].startswith("/accounts/login/")


def test_the_dashboard_shows_only_the_users_workspace(client: Client, personas: Personas) -> None:
    client.force_login(personas.teammate)
    page = client.get("/dashboard/").content.decode()
    assert "Acme bot" in page
    assert "Other bot" not in page


def test_switching_to_a_workspace_you_are_not_in_is_ignored(client: Client, personas: Personas) -> None:
    client.force_login(personas.teammate)
    client.post("/dashboard/workspace/", {"workspace": personas.other_workspace.pk})
    assert "Other bot" not in client.get("/dashboard/").content.decode()


def test_a_user_in_no_workspace_sees_a_clear_page(client: Client) -> None:
    User.objects.create_user("lonely", password="x-12345678")
    client.login(username="lonely", password="x-12345678")
    response = client.get("/dashboard/")
    assert response.status_code == 403
    assert b"You are not in a workspace yet" in response.content


def test_healthz_reports_each_part_and_503_without_a_worker(client: Client) -> None:
    # No Celery worker runs inside the unit-test process: the endpoint must say so with 503.
    response = client.get("/healthz")
    body = response.json()
    assert body["checks"]["database"]["status"] == "ok"
    assert body["checks"]["redis"]["status"] == "ok"
    assert body["checks"]["worker"]["status"] == "down"
    assert response.status_code == 503


def test_staff_cannot_enable_handoff_for_a_free_workspace_in_the_admin(
    client: Client, staff_user: User, personas: Personas
) -> None:
    from chatbots.services import subscription_set

    subscription_set(workspace=personas.workspace, plan_code="free")
    client.force_login(staff_user)
    bot = personas.chatbot
    url = reverse("admin:chatbots_chatbot_change", args=[bot.pk])
    form = {
        "workspace": bot.workspace_id,
        "name": bot.name,
        "allowed_origins": "[]",
        "accent_color": bot.accent_color,
        "greeting": bot.greeting,
        "ai_provider": bot.ai_provider,
        "fallback_message": bot.fallback_message,
        "handoff_enabled": "on",
        "handoff_keywords": "[]",
        "handoff_waiting_message": bot.handoff_waiting_message,
        "handoff_timeout_seconds": 180,
        "handoff_busy_message": bot.handoff_busy_message,
        "knowledge_entries-TOTAL_FORMS": 0,
        "knowledge_entries-INITIAL_FORMS": 0,
    }
    response = client.post(url, form)
    assert response.status_code == 200
    assert "needs the Starter plan" in response.content.decode()
    bot.refresh_from_db()
    assert bot.handoff_enabled is False
