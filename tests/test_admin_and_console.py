from __future__ import annotations

from typing import Any

import pytest
from django.contrib import admin
from django.contrib.auth.models import User
from django.contrib.sessions.backends.cache import SessionStore
from django.core.management import call_command
from django.db import connection
from django.test import Client, RequestFactory
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from chatbots.models import Chatbot, KnowledgeEntry, Membership, Workspace
from chatbots.services import membership_add
from pivra.context_processors import console as console_context
from tests.factories import Personas, chatbot_admin_form, make_chatbot, make_workspace
from tests.handoff_helpers import enable_handoff, new_visitor, say
from tests.handoff_helpers import request as request_handoff

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


def test_seed_demo_is_idempotent_and_never_resets_a_password() -> None:
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
    assert User.objects.get(username="alice").check_password("first-pass")  # set once, at creation
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


def _in_second_workspace(personas: Personas) -> Workspace:
    second = make_workspace("Second")
    membership_add(workspace=second, user=personas.teammate, role=Membership.Role.AGENT)
    return second


def test_a_user_in_two_workspaces_switches_and_sees_the_other_workspaces_conversations(
    client: Client, personas: Personas
) -> None:
    second = _in_second_workspace(personas)
    acme_visitor, acme_conversation = new_visitor(personas.chatbot)
    say(acme_visitor, acme_conversation, "asked in Acme")
    second_bot = make_chatbot(second, "Second bot")
    second_visitor, second_conversation = new_visitor(second_bot)
    say(second_visitor, second_conversation, "asked in Second")
    client.force_login(personas.teammate)

    before = client.get("/dashboard/conversations/").content.decode()
    assert "asked in Acme" in before and "asked in Second" not in before
    switcher = before.split('id="workspace-select"', 1)[1].split("</select>", 1)[0]
    assert f'value="{second.pk}"' in switcher and ">Second<" in switcher and ">Acme<" in switcher

    switched = client.post("/dashboard/workspace/", {"workspace": second.pk})
    assert switched.status_code == 302
    after = client.get("/dashboard/conversations/").content.decode()
    assert "asked in Second" in after and "asked in Acme" not in after
    assert f'data-workspace="{second.pk}"' in after  # the live list and socket follow the switch too
    assert client.get(f"/dashboard/conversations/{second_conversation.public_id}/").status_code == 200
    assert client.get(f"/dashboard/conversations/{acme_conversation.public_id}/").status_code == 404


def _dashboard_queries(client: Client) -> int:
    with CaptureQueriesContext(connection) as queries:
        assert client.get("/dashboard/analytics/").status_code == 200
    return len(queries)


def test_the_workspace_switcher_costs_one_query_however_many_workspaces(client: Client, personas: Personas) -> None:
    client.force_login(personas.teammate)
    _dashboard_queries(client)  # warm the session cache
    with_two = _dashboard_queries(client)
    for n in range(3):
        membership_add(workspace=make_workspace(f"More {n}"), user=personas.teammate, role=Membership.Role.AGENT)
    assert _dashboard_queries(client) == with_two


def test_the_sidebar_context_reuses_the_views_membership(personas: Personas, django_assert_num_queries: Any) -> None:
    _in_second_workspace(personas)
    enable_handoff(personas.chatbot)
    request_handoff(*new_visitor(personas.chatbot))
    membership = Membership.objects.select_related("workspace").get(
        user=personas.teammate, workspace=personas.workspace
    )
    request = RequestFactory().get("/dashboard/")
    request.user = personas.teammate
    request.session = SessionStore()
    request.membership = membership  # type: ignore[attr-defined]
    # One query for the badge and one for the switcher; none to look the membership up again.
    with django_assert_num_queries(2):
        context = console_context(request)
        assert [m.workspace.name for m in context["workspace_memberships"]] == ["Acme", "Second"]
        assert context["unclaimed_handoffs"] == 1


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
    form = chatbot_admin_form(bot, handoff_enabled="on")
    response = client.post(url, form)
    assert response.status_code == 200
    assert "needs the Starter plan" in response.content.decode()
    bot.refresh_from_db()
    assert bot.handoff_enabled is False
