"""Transfer, accept, decline, release and take-over over the console socket: the same services and
answers as the console API, the colleague's consoles told live. Against the real ASGI app, Redis
channel layer and PostgreSQL (committed data: the consumers work on their own threads)."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User

from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from tests.test_console_socket_commands import (  # noqa: F401 - the autouse fixture hands back connections
    _answer,
    _command_connections_back,
    _console,
    _world,
)

pytestmark = pytest.mark.django_db(transaction=True)


def _frame(kind: str, conversation: str, client_id: str, **extra: Any) -> dict[str, Any]:
    return {"type": kind, "conversation_id": conversation, "client_id": client_id, **extra}


async def _heard(socket: WebsocketCommunicator, frame_type: str) -> dict[str, Any]:
    while True:
        frame = await socket.receive_json_from(timeout=10)
        if frame.get("type") == frame_type:
            return frame


def _name(user: User, first: str) -> None:
    user.first_name = first
    user.save(update_fields=["first_name"])


def _handoff(conversation: str) -> Handoff:
    return Handoff.objects.select_related("claimed_by").get(conversation__public_id=conversation)


async def test_transfer_offer_accept_release_and_take_over_over_the_socket() -> None:
    world, conversation, _ = await sync_to_async(_world)()
    await sync_to_async(_name)(world.owner, "Alice")
    await sync_to_async(_name)(world.teammate, "Bob")
    alice = await _console(world.owner)
    bob = await _console(world.teammate)  # an open console: Bob is Online
    claimed = await _answer(alice, _frame("claim", conversation, "c-1"))
    assert claimed["type"] == "ack"

    moved = await _answer(alice, _frame("transfer", conversation, "t-1", to_user_id=world.teammate.pk))
    assert moved["type"] == "ack" and moved["handoff"]["status"] == "pending"
    offer = await _heard(bob, "offer")
    assert (offer["conversation"], offer["kind"], offer["by"]) == (conversation, "transfer", "Alice")
    again = await _answer(alice, _frame("transfer", conversation, "t-2", to_user_id=world.teammate.pk))
    assert (again["type"], again["code"]) == ("error", "transfer_pending")
    blocked = await _answer(alice, _frame("claim", conversation, "c-2"))
    assert (blocked["type"], blocked["code"]) == ("error", "offered_to_other")

    accepted = await _answer(bob, _frame("accept", conversation, "a-1"))
    assert accepted["type"] == "ack" and accepted["handoff"]["claimed_by"] == "Bob"

    released = await _answer(bob, _frame("release", conversation, "r-1"))
    assert released["type"] == "ack" and released["handoff"]["status"] == "pending"
    assert (await sync_to_async(_handoff)(conversation)).claimed_by is None

    await sync_to_async(handoff_claim)(agent=world.teammate, conversation_public_id=conversation)
    refused = await _answer(bob, _frame("take_over", conversation, "o-0"))
    assert (refused["type"], refused["code"]) == ("error", "not_admin")
    taken = await _answer(alice, _frame("take_over", conversation, "o-1"))
    assert taken["type"] == "ack" and taken["handoff"]["claimed_by"] == "Alice"
    told = await _heard(bob, "taken_over")
    assert (told["conversation"], told["by"]) == (conversation, "Alice")
    await alice.disconnect()
    await bob.disconnect()


async def test_decline_returns_the_transfer_to_the_queue_at_once() -> None:
    world, conversation, _ = await sync_to_async(_world)()
    alice = await _console(world.owner)
    bob = await _console(world.teammate)
    await sync_to_async(handoff_claim)(agent=world.owner, conversation_public_id=conversation)
    moved = await _answer(alice, _frame("transfer", conversation, "t-1", to_user_id=world.teammate.pk))
    assert moved["type"] == "ack"
    await _heard(bob, "offer")
    not_mine = await _answer(alice, _frame("decline", conversation, "d-0"))
    assert (not_mine["type"], not_mine["code"]) == ("error", "no_offer")
    declined = await _answer(bob, _frame("decline", conversation, "d-1"))
    assert declined["type"] == "ack" and declined["handoff"]["status"] == "pending"
    ended = await _heard(bob, "offer.ended")
    assert (ended["conversation"], ended["reason"]) == (conversation, "declined")
    handoff = await sync_to_async(_handoff)(conversation)
    assert handoff.offered_to_id is None
    claimed = await _answer(alice, _frame("claim", conversation, "c-1"))  # anyone may claim again
    assert claimed["type"] == "ack"
    await alice.disconnect()
    await bob.disconnect()


async def test_an_offline_colleague_and_a_malformed_target_are_refused() -> None:
    world, conversation, _ = await sync_to_async(_world)()
    alice = await _console(world.owner)  # Bob has no console open: not Online
    await sync_to_async(handoff_claim)(agent=world.owner, conversation_public_id=conversation)
    offline = await _answer(alice, _frame("transfer", conversation, "t-1", to_user_id=world.teammate.pk))
    assert (offline["type"], offline["code"]) == ("error", "agent_offline")
    outsider = await _answer(alice, _frame("transfer", conversation, "t-2", to_user_id=world.outsider.pk))
    assert (outsider["type"], outsider["code"]) == ("error", "agent_not_found")
    bad = await _answer(alice, _frame("transfer", conversation, "t-3", to_user_id="bob"))
    assert (bad["type"], bad["code"]) == ("error", "invalid_input")
    assert (await sync_to_async(_handoff)(conversation)).status == Handoff.Status.ACTIVE
    await alice.disconnect()
