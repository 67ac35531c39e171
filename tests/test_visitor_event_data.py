"""What a visitor may read in an event's data: never why a chat went back to the queue (an agent removed,
deactivated…), who did it (internal user ids), or that a colleague declined — on the widget socket and in
``GET /api/widget/events`` alike — while agents still get all of it."""

from __future__ import annotations

import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client
from django.utils import timezone

from conversations.models import Conversation, Event
from handoff.models import Handoff
from handoff.transitions import transfer as transfer_module
from handoff.transitions.claim import handoff_claim
from handoff.transitions.idle import handoff_resolve_idle
from handoff.transitions.offers import handoff_offer_decline
from handoff.transitions.release import handoff_release
from handoff.transitions.request import handoff_request
from handoff.transitions.takeover import handoff_take_over
from handoff.transitions.transfer import handoff_transfer
from pivra.asgi import application
from tests.factories import Personas, make_personas
from tests.handoff_helpers import enable_handoff

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]
# What the team's data says and the visitor must not read.
INTERNAL = ('"by"', "agent_deactivated", "transfer_declined", "declined", '"reason": "released"', '"from"')


@pytest.fixture
def world() -> Personas:
    personas = make_personas()
    enable_handoff(personas.chatbot)
    personas.owner.first_name, personas.teammate.first_name = "Alice", "Bob"
    personas.owner.save(update_fields=["first_name"])
    personas.teammate.save(update_fields=["first_name"])
    return personas


def _session(public_key: str) -> dict[str, Any]:
    response = Client().post(
        "/api/widget/session",
        {"public_key": public_key, "token": None, "locale": "en-GB"},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return response.json()


def _tour(world: Personas, key: str) -> int:
    """Every transition that writes team-only data into the thread; the conversation's last seq."""
    alice, bob = world.owner, world.teammate
    conversation = Conversation.objects.select_related("visitor").get(public_id=key)
    handoff_request(visitor=conversation.visitor, conversation_public_id=key, trigger="button")
    handoff_claim(agent=bob, conversation_public_id=key)
    handoff_release(agent=bob, conversation_public_id=key)  # released, by Bob
    handoff_claim(agent=bob, conversation_public_id=key)
    handoff_transfer(agent=bob, conversation_public_id=key, to_user_id=alice.pk)
    handoff_offer_decline(agent=alice, conversation_public_id=key)  # transfer_declined
    handoff_claim(agent=bob, conversation_public_id=key)
    handoff_take_over(agent=alice, conversation_public_id=key)  # from Bob
    alice.is_active = False
    alice.save(update_fields=["is_active"])  # agent_deactivated
    handoff_claim(agent=bob, conversation_public_id=key)
    later = timezone.now() + timedelta(hours=2)
    assert handoff_resolve_idle(handoff_id=Handoff.objects.get(conversation=conversation).pk, cutoff=later, now=later)
    conversation.refresh_from_db()
    return conversation.last_seq


def _assert_visitor_safe(frames: list[dict[str, Any]]) -> None:
    by_kind: dict[str, list[dict[str, Any]]] = {}
    for frame in frames:
        by_kind.setdefault(frame["kind"], []).append(frame["data"])
    assert by_kind["handoff.released"] == [{}, {}]
    assert by_kind["handoff.transfer_ended"] == [{"to": "Alice"}]
    assert by_kind["handoff.transferred"] == [{"to": "Alice"}]  # the widget's line names the colleague
    assert by_kind["handoff.taken_over"] == [{}]
    assert by_kind["handoff.resolved"] == [{"reason": "idle"}]  # the widget's idle line
    assert by_kind["handoff.requested"] == [{"trigger": "button"}]
    wire = json.dumps([frame["data"] for frame in frames])
    for internal in INTERNAL:
        assert internal not in wire


async def test_the_widget_never_hears_why_a_chat_went_back_to_the_queue_or_who_did_it(
    world: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transfer_module, "online_agent_ids", lambda *, workspace_id: {world.owner.pk})
    session = await sync_to_async(_session)(world.chatbot.public_key)
    key = session["state"]["conversation"]
    socket = WebsocketCommunicator(application, "/ws/widget/", headers=ORIGIN)
    connected, _ = await socket.connect()
    assert connected
    await socket.send_json_to({"type": "hello", "token": session["token"], "conversation": key, "last_seq": 0})
    assert (await socket.receive_json_from(timeout=5))["type"] == "welcome"

    last_seq = await sync_to_async(_tour)(world, key)

    live: list[dict[str, Any]] = []
    while not live or live[-1]["seq"] < last_seq:
        frame = await socket.receive_json_from(timeout=5)
        if frame["type"] == "event":
            live.append(frame)
    await socket.disconnect()
    assert [frame["seq"] for frame in live] == list(range(1, last_seq + 1))
    _assert_visitor_safe(live)

    history = await sync_to_async(
        lambda: Client(HTTP_AUTHORIZATION=f"Bearer {session['token']}").get(
            "/api/widget/events", {"conversation": key, "after_seq": 0}
        )
    )()
    assert history.status_code == 200, history.content
    _assert_visitor_safe(history.json()["events"])

    # The log keeps it all, and the team reads it: the console's events of the same conversation.
    stored = await sync_to_async(
        lambda: list(Event.objects.filter(kind="handoff.released").order_by("seq").values_list("data", flat=True))
    )()
    assert stored == [{"reason": "released", "by": world.teammate.pk}, {"reason": "agent_deactivated", "by": None}]

    def console_events() -> list[dict[str, Any]]:
        client = Client()
        client.force_login(world.teammate)
        response = client.get(f"/api/console/conversations/{key}/events", {"after_seq": 0})
        assert response.status_code == 200, response.content
        return response.json()["events"]

    team = await sync_to_async(console_events)()
    assert [f["data"] for f in team if f["kind"] == "handoff.released"] == stored
    assert [f["data"]["reason"] for f in team if f["kind"] == "handoff.transfer_ended"] == ["transfer_declined"]
