"""Dashboard → Actions: plan gate, roles, workspace isolation, the secret shown once, the log,
test sends, redelivery, and the admin."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from actions.models import Action, Delivery
from actions.services import action_create
from chatbots.services import subscription_set
from tests.factories import Personas

pytestmark = pytest.mark.django_db


@pytest.fixture(autouse=True)
def _allow_loopback(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True


def _action(personas: Personas, **overrides: Any) -> Action:
    fields: dict[str, Any] = {
        "workspace": personas.workspace,
        "chatbot": personas.chatbot,
        "name": "CRM",
        "kind": Action.Kind.WEBHOOK,
        "events": ["conversation.escalated"],
        "url": "https://crm.example.com/hooks/pivra",
    }
    fields.update(overrides)
    return action_create(**fields)


def _form(personas: Personas, **overrides: Any) -> dict[str, Any]:
    data: dict[str, Any] = {
        "chatbot": personas.chatbot.pk,
        "name": "Zapier",
        "kind": "webhook",
        "events": ["conversation.escalated", "lead.captured"],
        "url": "https://hooks.zapier.com/hooks/catch/1/abc/",
        "recipients": "",
    }
    data.update(overrides)
    return data


def test_the_free_plan_shows_a_locked_state_with_an_upgrade_prompt(client: Client, personas: Personas) -> None:
    subscription_set(workspace=personas.workspace, plan_code="free")
    client.force_login(personas.owner)
    for url in (reverse("dashboard:actions"), reverse("dashboard:action-create")):
        page = client.get(url).content.decode()
        assert "Actions are available on Starter plan and above" in page
        assert "Starter" in page and "See your plan" in page
    response = client.post(reverse("dashboard:action-create"), _form(personas))
    assert Action.objects.count() == 0
    assert "Actions are available on Starter plan" in response.content.decode()


def test_an_owner_creates_a_webhook_and_sees_its_secret_exactly_once(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    assert "No actions yet" in client.get(reverse("dashboard:actions")).content.decode()
    response = client.post(reverse("dashboard:action-create"), _form(personas))
    action = Action.objects.get()
    detail = reverse("dashboard:action-detail", args=[action.pk])
    assert response.status_code == 302 and response["Location"].startswith(f"{detail}?reveal=")
    assert action.events == ["conversation.escalated", "lead.captured"] and action.created_by == personas.owner
    first = client.get(response["Location"]).content.decode()
    assert action.secret in first and "you won't see it again" in first
    again = client.get(response["Location"]).content.decode()
    assert action.secret not in again and action.secret[-4:] in again  # masked from now on
    listing = client.get(reverse("dashboard:actions")).content.decode()
    assert "Zapier" in listing and "Handoff requested" in listing and "Acme bot" in listing


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"url": "ftp://example.com/x"}, "Use an https://"),
        ({"url": ""}, "Enter the URL"),
        ({"events": []}, "This field is required"),
        ({"kind": "email", "recipients": "not-an-address"}, "is not an email address"),
        ({"name": "   "}, "This field is required"),
    ],
)
def test_bad_input_is_refused_with_a_clear_message(
    client: Client, personas: Personas, overrides: dict[str, Any], message: str
) -> None:
    client.force_login(personas.owner)
    response = client.post(reverse("dashboard:action-create"), _form(personas, **overrides))
    assert response.status_code == 200
    assert message in response.content.decode()
    assert Action.objects.count() == 0


def test_internal_addresses_are_refused_when_saving(client: Client, personas: Personas, settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = False
    client.force_login(personas.owner)
    for url in ("http://127.0.0.1:8000/", "http://169.254.169.254/latest/", "http://localhost/", "http://0x7f.1/"):
        response = client.post(reverse("dashboard:action-create"), _form(personas, url=url))
        assert "destination is not allowed" in response.content.decode(), url
    assert Action.objects.count() == 0


def test_an_email_action_is_created_from_the_form(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    client.post(
        reverse("dashboard:action-create"),
        _form(personas, kind="email", url="", recipients="support@example.com\nsales@example.com"),
    )
    action = Action.objects.get()
    assert action.kind == "email" and action.recipients == ["support@example.com", "sales@example.com"]


def test_an_agent_can_look_but_not_change(client: Client, personas: Personas) -> None:
    action = _action(personas)
    client.force_login(personas.teammate)
    assert client.get(reverse("dashboard:actions")).status_code == 200
    page = client.get(reverse("dashboard:action-detail", args=[action.pk])).content.decode()
    assert "Delivery log" in page and "Send test" not in page and action.secret not in page
    assert client.get(reverse("dashboard:action-create")).status_code == 403
    assert client.get(reverse("dashboard:action-edit", args=[action.pk])).status_code == 403
    for name in ("action-pause", "action-test", "action-rotate-secret", "action-delete"):
        assert client.post(reverse(f"dashboard:{name}", args=[action.pk])).status_code == 403, name
    action.refresh_from_db()
    assert action.status == "active" and not Delivery.objects.exists()


def test_an_outsider_sees_nothing_of_another_workspace(client: Client, personas: Personas) -> None:
    action = _action(personas, name="Acme secret CRM")
    client.force_login(personas.outsider)
    assert "Acme secret CRM" not in client.get(reverse("dashboard:actions")).content.decode()
    for name in ("action-detail", "action-edit", "action-delete"):
        assert client.get(reverse(f"dashboard:{name}", args=[action.pk])).status_code == 404
    assert client.post(reverse("dashboard:action-pause", args=[action.pk])).status_code == 404


def test_an_owner_edits_pauses_resumes_tests_rotates_and_deletes(client: Client, personas: Personas) -> None:
    action = _action(personas)
    client.force_login(personas.owner)
    detail = reverse("dashboard:action-detail", args=[action.pk])
    client.post(
        reverse("dashboard:action-edit", args=[action.pk]),
        _form(personas, name="CRM v2", events=["handoff.resolved"], kind="email"),  # kind is fixed
    )
    action.refresh_from_db()
    assert (action.name, action.events, action.kind) == ("CRM v2", ["handoff.resolved"], "webhook")

    client.post(reverse("dashboard:action-pause", args=[action.pk]))
    action.refresh_from_db()
    assert action.status == "paused" and "Paused by owner" in client.get(detail).content.decode()
    client.post(reverse("dashboard:action-resume", args=[action.pk]))
    action.refresh_from_db()
    assert action.status == "active"

    client.post(reverse("dashboard:action-test", args=[action.pk]))
    test_delivery = Delivery.objects.get()
    assert test_delivery.is_test and test_delivery.status == "pending"
    page = client.get(detail).content.decode()
    assert "Test" in page and test_delivery.webhook_id in page and 'http-equiv="refresh"' in page
    delivery_page = client.get(reverse("dashboard:action-delivery", args=[action.pk, test_delivery.pk]))
    assert "&quot;test&quot;: true" in delivery_page.content.decode()

    old = action.secret
    rotated = client.post(reverse("dashboard:action-rotate-secret", args=[action.pk]))
    action.refresh_from_db()
    assert action.secret != old and action.previous_secret == old
    assert action.secret in client.get(rotated["Location"]).content.decode()  # the new one, once

    assert "Delete “CRM v2”?" in client.get(reverse("dashboard:action-delete", args=[action.pk])).content.decode()
    client.post(reverse("dashboard:action-delete", args=[action.pk]))
    assert not Action.objects.exists() and not Delivery.objects.exists()


def test_a_failed_delivery_is_redelivered_from_the_log(client: Client, personas: Personas) -> None:
    action = _action(personas)
    delivery = Delivery.objects.create(
        action=action,
        event_type="conversation.escalated",
        is_test=True,
        test_payload={"type": "conversation.escalated", "data": {}},
        webhook_id="msg_abc",
        status="failed",
        attempts=8,
        max_attempts=8,
        last_status_code=500,
        last_error="HTTP 500",
    )
    client.force_login(personas.owner)
    page = client.get(reverse("dashboard:action-detail", args=[action.pk])).content.decode()
    assert "HTTP 500" in page and "Redeliver" in page and "8 of 8" in page
    client.post(reverse("dashboard:action-redeliver", args=[action.pk, delivery.pk]))
    delivery.refresh_from_db()
    assert (delivery.status, delivery.max_attempts) == ("pending", 9)


def test_the_admin_lists_actions_and_redelivers(client: Client, personas: Personas, staff_user: User) -> None:
    action = _action(personas)
    delivery = Delivery.objects.create(
        action=action,
        event_type="conversation.escalated",
        is_test=True,
        test_payload={},
        webhook_id="msg_admin",
        status="failed",
        attempts=1,
        max_attempts=1,
    )
    client.force_login(staff_user)
    changelist = client.get(reverse("admin:actions_action_changelist")).content.decode()
    assert "CRM" in changelist
    change = client.get(reverse("admin:actions_action_change", args=[action.pk])).content.decode()
    assert action.secret not in change and action.secret[-4:] in change
    client.post(
        reverse("admin:actions_delivery_changelist"),
        {"action": "redeliver", "_selected_action": [delivery.pk]},
    )
    delivery.refresh_from_db()
    assert delivery.status == "pending"
    assert client.get(reverse("admin:actions_delivery_change", args=[delivery.pk])).status_code == 200


def _admin_change(client: Client, action: Action, **overrides: Any) -> Any:
    data: dict[str, Any] = {
        "name": action.name,
        "events": list(action.events),
        "url": action.url,
        "recipients": "\n".join(action.recipients),
        "_save": "Save",
    }
    data.update(overrides)
    return client.post(reverse("admin:actions_action_change", args=[action.pk]), data)


def test_admin_edits_go_through_the_services_and_cannot_move_an_action(
    client: Client, personas: Personas, staff_user: User, settings: Any
) -> None:
    action = _action(personas)
    client.force_login(staff_user)
    settings.WEBHOOK_ALLOW_PRIVATE = False
    refused = _admin_change(client, action, url="http://169.254.169.254/latest/meta-data/")
    assert refused.status_code == 200  # the form again, with the service's reason
    assert "Pivra only sends to public addresses" in refused.content.decode()
    no_events = _admin_change(client, action, events=[])
    assert no_events.status_code == 200
    saved = _admin_change(
        client,
        action,
        name="  CRM   v2 ",
        events=["lead.captured", "conversation.escalated"],
        url="https://crm.example.com/v2",
        # Not form fields: a staff edit can neither move an action nor flip its kind or status.
        workspace=personas.other_workspace.pk,
        chatbot=personas.other_chatbot.pk,
        kind="email",
        status="paused",
    )
    assert saved.status_code == 302
    action.refresh_from_db()
    assert (action.name, action.url) == ("CRM v2", "https://crm.example.com/v2")
    assert action.events == ["conversation.escalated", "lead.captured"]  # the service's catalogue order
    assert (action.workspace_id, action.chatbot_id, action.kind, action.status) == (
        personas.workspace.pk,
        personas.chatbot.pk,
        "webhook",
        "active",
    )


def test_admin_pause_and_resume_use_the_services(client: Client, personas: Personas, staff_user: User) -> None:
    action = _action(personas)
    queued = Delivery.objects.create(
        action=action, event_type="conversation.escalated", webhook_id="msg_q", max_attempts=8, status="pending"
    )
    client.force_login(staff_user)
    changelist = reverse("admin:actions_action_changelist")
    client.post(changelist, {"action": "pause", "_selected_action": [action.pk]})
    action.refresh_from_db()
    queued.refresh_from_db()
    assert action.status == "paused" and action.paused_reason == "Paused by staff (staff)."
    assert queued.status == "failed"  # closed as not sent, as the dashboard's pause does
    Action.objects.filter(pk=action.pk).update(failing_since=action.paused_at)
    client.post(changelist, {"action": "resume", "_selected_action": [action.pk]})
    action.refresh_from_db()
    assert action.status == "active" and action.paused_reason == "" and action.failing_since is None
