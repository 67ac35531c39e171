"""Transfer, release, take-over and decline over the console API: the services' answers and their
refusals as ``{code, detail}``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from django.test import Client

from chatbots.presence import presence_release, presence_touch
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from tests.factories import Personas
from tests.handoff_helpers import new_visitor, request

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def online_teammate(personas: Personas) -> Iterator[None]:
    socket = f"api-{uuid.uuid4().hex}"
    presence_touch(workspace_id=personas.workspace.pk, user_id=personas.teammate.pk, socket_id=socket)
    yield
    presence_release(workspace_id=personas.workspace.pk, user_id=personas.teammate.pk, socket_id=socket, now=0)


def _live(bot, agent) -> str:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    key = str(conversation.public_id)
    handoff_claim(agent=agent, conversation_public_id=key)
    return key


def test_the_openapi_docs_describe_the_new_operations() -> None:
    paths = Client().get("/api/openapi.json").json()["paths"]
    for action in ("transfer", "release", "take-over", "decline"):
        operation = paths[f"/api/console/handoffs/{{conversation_id}}/{action}"]["post"]
        assert {"403", "404", "409"} <= set(operation["responses"]), action
    assert "get" in paths["/api/console/handoffs/{conversation_id}/colleagues"]
    assert "get" in paths["/api/console/offers"]


def test_transfer_accept_and_release_over_http(bot, personas, online_teammate) -> None:
    owner, teammate = _client(personas.owner), _client(personas.teammate)
    key = _live(bot, personas.owner)
    base = f"/api/console/handoffs/{key}"
    colleagues = owner.get(f"{base}/colleagues").json()
    assert colleagues == [{"id": personas.teammate.pk, "name": "teammate"}]

    moved = owner.post(f"{base}/transfer", {"to_user_id": personas.teammate.pk}, content_type="application/json")
    assert moved.status_code == 200 and moved.json()["status"] == "pending"
    [offer] = teammate.get("/api/console/offers").json()  # a reloaded console shows the notice again
    assert (offer["conversation"], offer["kind"], offer["by"]) == (key, "transfer", "owner")
    assert owner.get("/api/console/offers").json() == []
    blocked = owner.post(f"{base}/claim")
    assert blocked.status_code == 409 and blocked.json()["code"] == "offered_to_other"
    accepted = teammate.post(f"{base}/claim")
    assert accepted.status_code == 200 and accepted.json()["claimed_by"] == "teammate"
    assert teammate.get("/api/console/offers").json() == []

    not_mine = owner.post(f"{base}/release")
    assert not_mine.status_code == 403 and not_mine.json()["code"] == "not_assignee"
    released = teammate.post(f"{base}/release")
    assert released.status_code == 200 and released.json()["status"] == "pending"
    assert Handoff.objects.get(conversation__public_id=key).claimed_by is None


def test_refusals_are_code_and_detail(bot, personas, online_teammate) -> None:
    owner, teammate, outsider = _client(personas.owner), _client(personas.teammate), _client(personas.outsider)
    key = _live(bot, personas.owner)
    base = f"/api/console/handoffs/{key}"
    cases = [
        (owner.post(f"{base}/transfer", {"to_user_id": personas.owner.pk}, content_type="application/json"), 400),
        (owner.post(f"{base}/transfer", {"to_user_id": personas.outsider.pk}, content_type="application/json"), 404),
        (owner.post(f"{base}/transfer", {"to_user_id": "x"}, content_type="application/json"), 422),
        (owner.post(f"{base}/transfer", {}, content_type="application/json"), 422),
        (teammate.post(f"{base}/take-over"), 403),
        (owner.post(f"{base}/take-over"), 409),  # already theirs
        (teammate.post(f"{base}/decline"), 409),  # nothing offered
        (outsider.post(f"{base}/release"), 404),
        (outsider.get(f"{base}/colleagues"), 404),
    ]
    for response, status in cases:
        body = response.json()
        assert response.status_code == status, body
        assert set(body) == {"code", "detail"} and body["detail"], body


def test_an_owner_takes_over_over_http(bot, personas) -> None:
    key = _live(bot, personas.teammate)
    taken = _client(personas.owner).post(f"/api/console/handoffs/{key}/take-over")
    assert taken.status_code == 200 and taken.json()["claimed_by"] == "owner"


def test_the_conversation_page_offers_the_right_buttons(bot, personas, online_teammate) -> None:
    key = _live(bot, personas.owner)

    def controls(user) -> dict:
        return _client(user).get(f"/dashboard/conversations/{key}/state").json()["controls"]

    mine = controls(personas.owner)
    assert (mine["can_release"], mine["can_transfer"], mine["can_take_over"]) == (True, True, False)
    theirs = controls(personas.teammate)  # an agent looking at the owner's chat
    assert (theirs["can_release"], theirs["can_transfer"], theirs["can_take_over"]) == (False, False, False)
    _client(personas.owner).post(
        f"/api/console/handoffs/{key}/transfer", {"to_user_id": personas.teammate.pk}, content_type="application/json"
    )
    offered = controls(personas.teammate)
    assert offered["offered_to_me"] and offered["can_claim"]
    assert offered["note"].startswith("owner transferred this conversation to you")
    waiting = controls(personas.owner)
    assert waiting["badge"] == "Transferring to teammate" and not waiting["can_claim"]
    _client(personas.teammate).post(f"/api/console/handoffs/{key}/claim")
    owner_view = controls(personas.owner)  # the owner may take it back
    assert owner_view["can_take_over"] and not owner_view["can_reply"]
    page = _client(personas.owner).get(f"/dashboard/conversations/{key}/")
    assert b"data-take-over" in page.content and b"Transfer this conversation" in page.content
