"""Replies and claims over the agent's console socket: the console API's services and answers, with
the frame's ``client_id`` on every ``ack`` and ``error``, and off the process's single sync thread.

Against the real ASGI app, Redis channel layer and PostgreSQL; data is committed because the
consumers read and write from their own threads."""

from __future__ import annotations

import asyncio
import json
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.db import connection, connections
from django.test import Client

from chatbots.models import Membership
from conversations.models import Event
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from handoff.transitions.resolve import handoff_resolve
from pivra.asgi import application
from pivra.console import command_pool, frames
from pivra.widget.tokens import visitor_token
from tests.factories import Personas, make_chatbot, make_personas, make_user, make_workspace
from tests.handoff_helpers import enable_handoff, new_visitor, request

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]


def _close_command_connections() -> None:
    """Close the database connection of every command thread: one task per thread, each waiting
    until all threads hold one, so every thread runs exactly one."""
    executor = command_pool.COMMAND_EXECUTOR
    if executor is None:  # commands run on the shared sync thread
        return
    workers = executor._max_workers
    barrier = threading.Barrier(workers)

    def close() -> None:
        barrier.wait(timeout=30)
        connections.close_all()

    for future in [executor.submit(close) for _ in range(workers)]:
        future.result(timeout=60)


@pytest.fixture(autouse=True)
def _command_connections_back() -> Iterator[None]:
    """Commands run on threads of their own: hand their pooled connections back after each test, or
    the test database could not be flushed and dropped while they are checked out."""
    yield
    _close_command_connections()


def _world() -> tuple[Personas, str, str]:
    """Personas and a handoff (conversation id, visitor token) waiting for an agent."""
    personas = make_personas()
    enable_handoff(personas.chatbot)
    visitor, conversation = new_visitor(personas.chatbot)
    request(visitor, conversation)
    return personas, str(conversation.public_id), visitor_token(visitor)


def _session_key(user: Any) -> str:
    client = Client()
    client.force_login(user)
    return str(client.cookies["sessionid"].value)


async def _console(user: Any, session_key: str | None = None) -> WebsocketCommunicator:
    key = session_key or await sync_to_async(_session_key)(user)
    headers = [*ORIGIN, (b"cookie", f"sessionid={key}".encode())]
    socket = WebsocketCommunicator(application, "/ws/console/", headers=headers)
    connected, _ = await socket.connect()
    assert connected
    assert (await socket.receive_json_from(timeout=5))["type"] == "welcome"
    return socket


async def _answer(socket: WebsocketCommunicator, frame: dict[str, Any]) -> dict[str, Any]:
    """Send a command and return its ack or error (other frames — queue changes — are skipped)."""
    await socket.send_json_to(frame)
    while True:
        answer = await socket.receive_json_from(timeout=10)
        if answer.get("type") in ("ack", "error") and answer.get("client_id") == frame["client_id"]:
            return answer


def _reply(conversation: str, client_id: str, text: str = "Hello from the agent") -> dict[str, Any]:
    return {"type": "reply", "conversation_id": conversation, "text": text, "client_id": client_id}


def _claim(conversation: str, client_id: str = "claim-1") -> dict[str, Any]:
    return {"type": "claim", "conversation_id": conversation, "client_id": client_id}


async def test_a_claim_and_a_reply_over_the_socket_reach_the_visitors_widget() -> None:
    world, conversation, token = await sync_to_async(_world)()
    widget = WebsocketCommunicator(application, "/ws/widget/", headers=ORIGIN)
    assert (await widget.connect())[0]
    await widget.send_json_to({"type": "hello", "token": token, "conversation": conversation, "last_seq": 100})
    assert (await widget.receive_json_from(timeout=5))["type"] == "welcome"
    socket = await _console(world.teammate)

    claimed = await _answer(socket, _claim(conversation))
    assert claimed["type"] == "ack"
    assert claimed["handoff"]["status"] == "active"
    assert claimed["handoff"]["conversation"] == conversation
    assert claimed["handoff"]["claimed_by"]

    acked = await _answer(socket, _reply(conversation, "r-1"))
    assert acked == {"type": "ack", "client_id": "r-1", "seq": acked["seq"], "duplicate": False}
    while True:
        frame = await widget.receive_json_from(timeout=5)
        if frame.get("type") == "event" and frame.get("author") == "agent":
            break
    assert (frame["text"], frame["seq"], frame["client_id"]) == ("Hello from the agent", acked["seq"], "r-1")
    await socket.disconnect()
    await widget.disconnect()


async def test_a_resent_reply_is_stored_once_and_acked_with_its_first_seq() -> None:
    world, conversation, _ = await sync_to_async(_world)()
    await sync_to_async(handoff_claim)(agent=world.teammate, conversation_public_id=conversation)
    socket = await _console(world.teammate)
    first = await _answer(socket, _reply(conversation, "same-id"))
    again = await _answer(socket, _reply(conversation, "same-id"))
    assert (first["duplicate"], again["duplicate"], again["seq"]) == (False, True, first["seq"])
    other = await _answer(socket, _reply(conversation, "same-id", text="Something else"))
    assert (other["type"], other["code"]) == ("error", "client_id_reused")
    count = await sync_to_async(Event.objects.filter(client_id="same-id").count)()
    assert count == 1
    await socket.disconnect()


async def test_only_the_assignee_may_reply_and_refusals_say_code_and_detail() -> None:
    world, conversation, _ = await sync_to_async(_world)()
    socket = await _console(world.owner)
    unclaimed = await _answer(socket, _reply(conversation, "r-early"))
    assert (unclaimed["type"], unclaimed["code"]) == ("error", "not_claimed")
    await sync_to_async(handoff_claim)(agent=world.teammate, conversation_public_id=conversation)
    refused = await _answer(socket, _reply(conversation, "r-owner"))
    assert refused["type"] == "error" and refused["code"] == "not_assignee"
    assert refused["client_id"] == "r-owner" and "who claimed this conversation" in refused["detail"]
    lost = await _answer(socket, _claim(conversation, "c-owner"))
    assert (lost["type"], lost["code"]) == ("error", "already_claimed")
    assert not await sync_to_async(Event.objects.filter(client_id__in=["r-early", "r-owner"]).exists)()
    await socket.disconnect()


def _http_reply(user: Any, conversation: str, client_id: str) -> tuple[int, dict[str, Any]]:
    client = Client()
    client.force_login(user)
    response = client.post(
        f"/api/console/handoffs/{conversation}/reply",
        data={"text": "Hello from the agent", "client_id": client_id},
        content_type="application/json",
    )
    return response.status_code, response.json()


async def test_a_reply_to_a_resolved_conversation_is_refused_as_resolved_over_socket_and_http() -> None:
    world, conversation, _ = await sync_to_async(_world)()
    await sync_to_async(handoff_claim)(agent=world.teammate, conversation_public_id=conversation)
    await sync_to_async(handoff_resolve)(agent=world.teammate, conversation_public_id=conversation)
    socket = await _console(world.teammate)
    refused = await _answer(socket, _reply(conversation, "r-late"))
    status, body = await sync_to_async(_http_reply)(world.teammate, conversation, "r-late-http")
    # "Claim it first" would send the agent to a claim the resolved handoff refuses: both say resolved.
    assert (refused["type"], refused["code"], refused["client_id"]) == ("error", "handoff_resolved", "r-late")
    assert (status, body) == (409, {"code": "handoff_resolved", "detail": refused["detail"]})
    claim = await _answer(socket, _claim(conversation, "c-late"))
    assert claim["code"] == "handoff_resolved"  # what a claim of it says too
    assert not await sync_to_async(Event.objects.filter(client_id__in=["r-late", "r-late-http"]).exists)()
    await socket.disconnect()


async def test_another_workspaces_conversation_is_not_found() -> None:
    world, conversation, _ = await sync_to_async(_world)()
    socket = await _console(world.outsider)
    for frame in (_claim(conversation, "c-x"), _reply(conversation, "r-x")):
        answer = await _answer(socket, frame)
        assert (answer["type"], answer["code"]) == ("error", "handoff_not_found")
    status = await sync_to_async(lambda: Handoff.objects.get(conversation__public_id=conversation).status)()
    assert status == Handoff.Status.PENDING
    await socket.disconnect()


async def test_a_malformed_command_names_its_client_id() -> None:
    world, conversation, _ = await sync_to_async(_world)()
    socket = await _console(world.teammate)
    bad = await _answer(socket, {"type": "reply", "conversation_id": "nope", "text": "x", "client_id": "r-bad"})
    assert (bad["code"], bad["client_id"]) == ("invalid_input", "r-bad")
    empty = await _answer(socket, _reply(conversation, "r-empty", text="   "))
    assert empty["code"] == "empty_message"
    spaced = await _answer(socket, _reply(conversation, "has space"))
    assert spaced["code"] == "invalid_client_id"
    await socket.disconnect()


async def test_a_long_reply_fits_in_one_frame() -> None:
    world, conversation, _ = await sync_to_async(_world)()
    await sync_to_async(handoff_claim)(agent=world.teammate, conversation_public_id=conversation)
    socket = await _console(world.teammate)
    answer = await _answer(socket, _reply(conversation, "r-long", text="é" * 2000))
    assert answer["type"] == "ack"
    too_long = await _answer(socket, _reply(conversation, "r-2001", text="x" * 2001))
    assert too_long["code"] == "message_too_long"
    await socket.disconnect()


async def test_a_deactivated_agents_command_is_refused_and_the_socket_ends() -> None:
    world, conversation, _ = await sync_to_async(_world)()
    await sync_to_async(handoff_claim)(agent=world.teammate, conversation_public_id=conversation)
    socket = await _console(world.teammate)
    # A queryset update sends no signal, so only the check before the command can see it.
    await sync_to_async(User.objects.filter(pk=world.teammate.pk).update)(is_active=False)
    await socket.send_json_to(_reply(conversation, "r-after"))
    ended = await socket.receive_json_from(timeout=5)
    assert ended["type"] == "session.ended"
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    assert not await sync_to_async(Event.objects.filter(client_id="r-after").exists)()


async def test_commands_do_not_wait_for_the_shared_sync_thread() -> None:
    """A claim is answered while the thread every sync view runs on is busy (it would wait before)."""
    world, conversation, _ = await sync_to_async(_world)()
    socket = await _console(world.teammate)
    release = threading.Event()
    blocker = asyncio.ensure_future(sync_to_async(release.wait, thread_sensitive=True)(30))
    try:
        answer = await _answer(socket, _claim(conversation))
        assert answer["type"] == "ack"
    finally:
        release.set()
        await blocker
    await socket.disconnect()


def _storm_world(agents: int) -> tuple[list[User], str]:
    workspace = make_workspace("Storm", plan="business")
    from chatbots.models import Membership
    from chatbots.services import membership_add

    users = [make_user(f"storm-{i}") for i in range(agents)]
    for user in users:
        membership_add(workspace=workspace, user=user, role=Membership.Role.AGENT)
    bot = enable_handoff(make_chatbot(workspace, "Storm bot"))
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    return users, str(conversation.public_id)


async def test_concurrent_claims_over_sockets_have_exactly_one_winner() -> None:
    users, conversation = await sync_to_async(_storm_world)(8)
    sockets = [await _console(user) for user in users]
    answers = await asyncio.gather(*(_answer(s, _claim(conversation, f"c{i}")) for i, s in enumerate(sockets)))
    assert sorted(a["type"] for a in answers) == ["ack"] + ["error"] * 7
    assert {a["code"] for a in answers if a["type"] == "error"} == {"already_claimed"}
    winner = next(i for i, a in enumerate(answers) if a["type"] == "ack")
    claimed_by = await sync_to_async(lambda: Handoff.objects.get(conversation__public_id=conversation).claimed_by_id)()
    assert claimed_by == users[winner].pk
    assert await sync_to_async(Event.objects.filter(kind="handoff.claimed").count)() == 1
    for s in sockets:
        await s.disconnect()


async def test_a_session_deleted_since_the_handshake_is_refused_and_nothing_is_stored() -> None:
    world, conversation, _ = await sync_to_async(_world)()
    await sync_to_async(handoff_claim)(agent=world.teammate, conversation_public_id=conversation)
    key = await sync_to_async(_session_key)(world.teammate)
    socket = await _console(world.teammate, key)
    # Signed out elsewhere: the row goes without a logout signal, so only the command's own check sees it.
    await sync_to_async(lambda: Session.objects.filter(session_key=key).delete())()
    await socket.send_json_to(_reply(conversation, "r-signed-out"))
    assert (await socket.receive_json_from(timeout=5))["type"] == "session.ended"
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    assert not await sync_to_async(Event.objects.filter(client_id="r-signed-out").exists)()


def _delete_memberships_raw(user_id: int) -> None:
    with connection.cursor() as cursor:
        cursor.execute(f"DELETE FROM {Membership._meta.db_table} WHERE user_id = %s", [user_id])


async def test_a_removed_membership_refuses_reply_and_claim_as_http_does() -> None:
    world, conversation, _ = await sync_to_async(_world)()
    socket = await _console(world.teammate)
    # Removed behind Django's back (raw SQL: no signal, so no revocation frame closes the socket first):
    # the command's own reads must refuse. An ORM delete would signal, and the socket could close
    # before it answered.
    await sync_to_async(_delete_memberships_raw)(world.teammate.pk)
    for frame in (_claim(conversation, "c-gone"), _reply(conversation, "r-gone")):
        answer = await _answer(socket, frame)
        assert (answer["type"], answer["code"]) == ("error", "handoff_not_found")
    status = await sync_to_async(lambda: Handoff.objects.get(conversation__public_id=conversation).status)()
    assert status == Handoff.Status.PENDING
    assert not await sync_to_async(Event.objects.filter(client_id="r-gone").exists)()
    await socket.disconnect()


async def test_a_flood_of_commands_is_refused_with_rate_limited(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(command_pool, "COMMAND_BURST", 3)
    monkeypatch.setattr(command_pool, "COMMAND_RATE_PER_SECOND", 0.0001)  # no refill within the test
    world, conversation, _ = await sync_to_async(_world)()
    await sync_to_async(handoff_claim)(agent=world.teammate, conversation_public_id=conversation)
    socket = await _console(world.teammate)
    answers = [await _answer(socket, _reply(conversation, f"f-{i}")) for i in range(4)]
    assert [a["type"] for a in answers] == ["ack", "ack", "ack", "error"]
    assert (answers[3]["code"], answers[3]["client_id"]) == ("rate_limited", "f-3")
    assert answers[3]["detail"]
    stored = await sync_to_async(
        lambda: set(Event.objects.filter(author="agent").values_list("client_id", flat=True))
    )()
    assert stored == {"f-0", "f-1", "f-2"}
    await socket.disconnect()


def test_the_token_bucket_allows_a_burst_then_its_rate() -> None:
    now = [0.0]
    bucket = command_pool.TokenBucket(burst=3, rate=2.0, clock=lambda: now[0])
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]
    now[0] = 0.5  # one token back
    assert [bucket.take(), bucket.take()] == [True, False]
    now[0] = 100.0  # never more than the burst
    assert [bucket.take() for _ in range(4)] == [True, True, True, False]


def test_command_threads_leave_the_sync_thread_and_the_publisher_their_connections() -> None:
    sizes = {pool: command_pool.command_threads(pool) for pool in (None, 1, 2, 3, 4, 5, 20, 500)}
    assert sizes == {None: 0, 1: 0, 2: 0, 3: 0, 4: 1, 5: 1, 20: 9, 500: command_pool.MAX_COMMAND_THREADS}


async def test_one_user_runs_at_most_its_share_of_commands_at_once() -> None:
    entered: list[str] = []
    release = asyncio.Event()

    async def command(user_id: int, name: str) -> None:
        async with command_pool.user_command_slot(user_id):
            entered.append(name)
            await release.wait()

    tasks = [asyncio.ensure_future(command(1, f"a{i}")) for i in range(command_pool.USER_COMMANDS_AT_ONCE + 1)]
    tasks.append(asyncio.ensure_future(command(2, "b")))
    for _ in range(20):  # let every task run up to its slot
        await asyncio.sleep(0)
    assert sorted(entered) == sorted([f"a{i}" for i in range(command_pool.USER_COMMANDS_AT_ONCE)] + ["b"])
    release.set()
    await asyncio.gather(*tasks)
    assert len(entered) == command_pool.USER_COMMANDS_AT_ONCE + 2
    assert command_pool._user_slots == {}


async def test_frame_errors_name_the_client_id_and_the_limit_of_that_frame_type() -> None:
    world, conversation, _ = await sync_to_async(_world)()
    socket = await _console(world.teammate)
    largest = frames.max_frame_bytes("reply")
    huge = await _answer(socket, _reply(conversation, "r-huge", text="x" * (largest + 10)))
    assert (huge["code"], huge["client_id"]) == ("frame_too_large", "r-huge")
    assert str(largest) in huge["detail"]
    padded = {**_claim(conversation, "c-big"), "pad": "x" * frames.MAX_FRAME_BYTES}
    big = await _answer(socket, padded)
    assert (big["code"], big["client_id"]) == ("frame_too_large", "c-big")
    assert f"'claim' frame can be at most {frames.MAX_FRAME_BYTES} bytes" in big["detail"]
    nul = await _answer(socket, _reply(conversation, "r-nul", text="a\x00b"))
    assert (nul["code"], nul["client_id"]) == ("invalid_input", "r-nul")
    assert not await sync_to_async(Event.objects.filter(client_id__in=["r-huge", "r-nul"]).exists)()
    await socket.disconnect()


async def test_a_full_length_reply_beyond_the_bmp_fits_in_one_frame() -> None:
    """2,000 emoji, each escaped by JSON as a surrogate pair (12 bytes), are one reply's worth."""
    world, conversation, _ = await sync_to_async(_world)()
    await sync_to_async(handoff_claim)(agent=world.teammate, conversation_public_id=conversation)
    socket = await _console(world.teammate)
    text = "\U0001f600" * 2000
    assert len(json.dumps(text, ensure_ascii=True)) == 12 * 2000 + 2
    answer = await _answer(socket, _reply(conversation, "r-emoji", text=text))
    assert answer["type"] == "ack", answer
    stored = await sync_to_async(lambda: Event.objects.get(client_id="r-emoji").text)()
    assert stored == text
    await socket.disconnect()
