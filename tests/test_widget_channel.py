"""The visitor's channel: tokens, the socket protocol, replay, idempotency and isolation.

Consumers run against the real ASGI app and the real Redis channel layer; data is committed
(transactional) because consumers reach the database from their own threads."""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import time_machine
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.db import transaction
from django.test import Client

from conversations.models import Event, Visitor
from pivra.asgi import application
from pivra.realtime import send_on_commit, visitor_group
from pivra.widget import operations
from tests.channel_helpers import frames_heard, sse_stream
from tests.factories import Personas, make_personas
from tests.handoff_helpers import enable_handoff

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]


@pytest.fixture
def world() -> Personas:
    personas = make_personas()
    enable_handoff(personas.chatbot)
    return personas


def _session(public_key: str, token: str | None = None) -> dict[str, Any]:
    response = Client().post(
        "/api/widget/session",
        {"public_key": public_key, "token": token, "locale": "en-GB"},
        content_type="application/json",
    )
    assert response.status_code == 200, response.content
    return response.json()


async def _connect(
    token: str, conversation: str | None = None, last_seq: int = 0
) -> tuple[WebsocketCommunicator, dict]:
    socket = WebsocketCommunicator(application, "/ws/widget/", headers=ORIGIN)
    connected, _ = await socket.connect()
    assert connected
    await socket.send_json_to({"type": "hello", "token": token, "conversation": conversation, "last_seq": last_seq})
    welcome = await socket.receive_json_from(timeout=5)
    assert welcome["type"] == "welcome", welcome
    return socket, welcome


async def _until(socket: WebsocketCommunicator, predicate, wait: float = 5) -> dict:
    while True:
        frame = await socket.receive_json_from(timeout=wait)
        if predicate(frame):
            return frame


def test_a_session_gives_a_token_and_a_forged_or_foreign_token_starts_a_new_visitor(world: Personas) -> None:
    first = _session(world.chatbot.public_key)
    again = _session(world.chatbot.public_key, first["token"])
    assert again["visitor"] == first["visitor"]
    assert again["state"]["conversation"] == first["state"]["conversation"]

    forged = _session(world.chatbot.public_key, first["token"][:-2] + "xx")
    assert forged["visitor"] != first["visitor"]
    foreign = _session(world.other_chatbot.public_key, first["token"])
    assert foreign["visitor"] != first["visitor"]
    assert foreign["state"]["conversation"] != first["state"]["conversation"]


def test_an_unknown_chatbot_gets_a_clear_404() -> None:
    response = Client().post("/api/widget/session", {"public_key": "pk_nope"}, content_type="application/json")
    assert response.status_code == 404
    assert response.json() == {"code": "chatbot_not_found", "detail": "This chat is not available."}


async def test_a_message_is_acked_stored_once_and_broadcast(world: Personas) -> None:
    session = await sync_to_async(_session)(world.chatbot.public_key)
    socket, welcome = await _connect(session["token"], session["state"]["conversation"])
    assert welcome["state"]["status"] == "open"
    await socket.send_json_to({"type": "message", "client_id": "c-1", "text": "Hello there"})
    ack = await _until(socket, lambda f: f["type"] == "ack")
    event = await _until(socket, lambda f: f["type"] == "event")
    assert ack == {"type": "ack", "client_id": "c-1", "seq": 1}
    assert event["seq"] == 1 and event["author"] == "visitor" and event["text"] == "Hello there"
    assert event["client_id"] == "c-1"

    await socket.send_json_to({"type": "message", "client_id": "c-1", "text": "Hello there"})
    assert await _until(socket, lambda f: f["type"] == "ack") == {"type": "ack", "client_id": "c-1", "seq": 1}
    await socket.send_json_to({"type": "message", "client_id": "c-1", "text": "Something else"})
    error = await _until(socket, lambda f: f["type"] == "error")
    assert error["code"] == "client_id_reused" and error["client_id"] == "c-1"
    assert await sync_to_async(Event.objects.filter(author="visitor").count)() == 1
    await socket.disconnect()


async def test_a_reconnecting_client_gets_exactly_what_it_missed_in_order(world: Personas) -> None:
    session = await sync_to_async(_session)(world.chatbot.public_key)
    conversation = session["state"]["conversation"]
    socket, _ = await _connect(session["token"], conversation)
    await socket.send_json_to({"type": "message", "client_id": "m1", "text": "first"})
    await _until(socket, lambda f: f["type"] == "event")
    await socket.disconnect()

    visitor = await sync_to_async(lambda: Visitor.objects.get(chatbot=world.chatbot))()
    for n in range(2, 6):
        await sync_to_async(operations.widget_message)(visitor=visitor, client_id=f"m{n}", text=f"message {n}")

    socket, welcome = await _connect(session["token"], conversation, last_seq=1)
    assert welcome["state"]["last_seq"] == 5
    replayed = [await socket.receive_json_from(timeout=5) for _ in range(4)]
    assert [f["seq"] for f in replayed] == [2, 3, 4, 5]
    assert [f["text"] for f in replayed] == ["message 2", "message 3", "message 4", "message 5"]
    assert await socket.receive_nothing(timeout=0.3)
    await socket.disconnect()


async def test_a_gap_too_old_for_replay_gets_an_explicit_resync(world: Personas, monkeypatch) -> None:
    monkeypatch.setattr(operations, "REPLAY_LIMIT", 2)
    session = await sync_to_async(_session)(world.chatbot.public_key)
    visitor = await sync_to_async(lambda: Visitor.objects.get(chatbot=world.chatbot))()
    for n in range(5):
        await sync_to_async(operations.widget_message)(visitor=visitor, client_id=f"r{n}", text=f"m{n}")
    socket, _ = await _connect(session["token"], session["state"]["conversation"], last_seq=1)
    resync = await socket.receive_json_from(timeout=5)
    assert resync["type"] == "resync" and resync["state"]["last_seq"] == 5
    await socket.disconnect()


async def test_bad_frames_get_structured_errors_and_the_socket_survives(world: Personas) -> None:
    session = await sync_to_async(_session)(world.chatbot.public_key)
    socket, _ = await _connect(session["token"], session["state"]["conversation"])
    await socket.send_to(text_data="{not json")
    assert (await socket.receive_json_from())["code"] == "invalid_json"
    await socket.send_json_to({"type": "dance"})
    assert (await socket.receive_json_from())["code"] == "unknown_type"
    await socket.send_json_to({"no": "type"})
    assert (await socket.receive_json_from())["code"] == "invalid_frame"
    await socket.send_json_to({"type": "message", "client_id": "x"})
    assert (await socket.receive_json_from())["code"] == "invalid_input"
    await socket.send_to(text_data=json.dumps({"type": "message", "client_id": "big", "text": "a" * 20_000}))
    assert (await socket.receive_json_from())["code"] == "frame_too_large"
    await socket.send_json_to({"type": "message", "client_id": "long", "text": "a" * 2_001})
    assert (await socket.receive_json_from())["code"] == "message_too_long"
    await socket.send_json_to({"type": "ping"})
    assert (await socket.receive_json_from()) == {"type": "pong"}
    await socket.disconnect()


async def test_frames_before_hello_are_refused_and_a_bad_token_closes(world: Personas) -> None:
    socket = WebsocketCommunicator(application, "/ws/widget/", headers=ORIGIN)
    await socket.connect()
    await socket.send_json_to({"type": "message", "client_id": "x", "text": "hi"})
    assert (await socket.receive_json_from())["code"] == "not_authenticated"
    await socket.send_json_to({"type": "hello", "token": "forged"})
    assert (await socket.receive_json_from())["code"] == "not_authenticated"
    assert (await socket.receive_output(timeout=2))["type"] == "websocket.close"


async def test_a_socket_from_a_foreign_origin_is_rejected() -> None:
    socket = WebsocketCommunicator(application, "/ws/widget/", headers=[(b"origin", b"https://evil.example")])
    connected, _ = await socket.connect()
    assert not connected


async def test_visitor_a_never_sees_or_writes_visitor_bs_conversation(world: Personas) -> None:
    a = await sync_to_async(_session)(world.chatbot.public_key)
    b = await sync_to_async(_session)(world.chatbot.public_key)
    b_visitor = await sync_to_async(lambda: Visitor.objects.get(chatbot=world.chatbot, public_id=b["visitor"]))()
    await sync_to_async(operations.widget_message)(visitor=b_visitor, client_id="b1", text="B's secret")

    # Socket: asking for B's conversation yields A's own state and none of B's events.
    socket, welcome = await _connect(a["token"], b["state"]["conversation"], last_seq=0)
    assert welcome["state"]["conversation"] == a["state"]["conversation"]
    assert await socket.receive_nothing(timeout=0.3)
    # B's new messages never reach A's socket.
    await sync_to_async(operations.widget_message)(visitor=b_visitor, client_id="b2", text="B again")
    assert await socket.receive_nothing(timeout=0.5)
    await socket.disconnect()

    # HTTP: B's conversation is not found for A.
    client = Client(HTTP_AUTHORIZATION=f"Bearer {a['token']}")
    response = await sync_to_async(client.get)("/api/widget/events", {"conversation": b["state"]["conversation"]})
    assert response.status_code == 404
    assert response.json()["code"] == "conversation_not_found"
    # A's message lands in A's conversation only.
    response = await sync_to_async(client.post)(
        "/api/widget/messages", {"client_id": "a1", "text": "mine"}, content_type="application/json"
    )
    assert response.status_code == 200
    texts = await sync_to_async(
        lambda: list(
            Event.objects.filter(conversation__public_id=b["state"]["conversation"]).values_list("text", flat=True)
        )
    )()
    assert texts == ["B's secret", "B again"]


def test_http_calls_without_a_valid_token_get_401(world: Personas) -> None:
    for client in (Client(), Client(HTTP_AUTHORIZATION="Bearer forged")):
        response = client.post(
            "/api/widget/messages", {"client_id": "x", "text": "hi"}, content_type="application/json"
        )
        assert response.status_code == 401
        assert response.json()["code"] == "not_authenticated"


def test_the_http_api_rate_limits_with_retry_after(world: Personas, settings) -> None:
    settings.RATE_VISITOR_PER_MINUTE = 3
    session = _session(world.chatbot.public_key)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {session['token']}")
    codes = [
        client.post("/api/widget/messages", {"client_id": f"q{n}", "text": "hi"}, content_type="application/json")
        for n in range(4)
    ]
    assert [r.status_code for r in codes] == [200, 200, 200, 429]
    assert codes[-1].json()["code"] == "rate_limited"
    assert 1 <= int(codes[-1]["Retry-After"]) <= 60


async def test_nothing_is_pushed_for_a_rolled_back_transaction() -> None:
    layer = get_channel_layer()
    channel = await layer.new_channel()
    group = visitor_group(uuid.uuid4())
    await layer.group_add(group, channel)

    def rolled_back() -> None:
        try:
            with transaction.atomic():
                send_on_commit([group], {"type": "event", "text": "never"})
                raise RuntimeError("abort")
        except RuntimeError:
            pass
        with transaction.atomic():
            send_on_commit([group], {"type": "event", "text": "committed"})

    await sync_to_async(rolled_back)()
    message = await layer.receive(channel)
    assert message["frame"]["text"] == "committed"


async def test_the_handoff_button_over_the_socket_moves_the_widget_to_pending(world: Personas) -> None:
    session = await sync_to_async(_session)(world.chatbot.public_key)
    socket, _ = await _connect(session["token"], session["state"]["conversation"])
    await socket.send_json_to({"type": "handoff.request", "client_id": "h1"})
    state = await _until(socket, lambda f: f["type"] == "state")
    assert state["state"]["handoff"]["status"] == "pending"
    assert state["state"]["handoff"]["waiting_message"] == "Connecting you with the team now…"
    await socket.disconnect()


def test_an_expired_token_starts_a_new_visitor_and_never_opens_the_old_conversation(world: Personas, settings) -> None:
    with time_machine.travel("2026-03-01 09:00:00+00:00", tick=False):
        old = _session(world.chatbot.public_key)
        client = Client(HTTP_AUTHORIZATION=f"Bearer {old['token']}")
        assert (
            client.post(
                "/api/widget/messages", {"client_id": "e1", "text": "mine"}, content_type="application/json"
            ).status_code
            == 200
        )
    expired = datetime(2026, 3, 1, 9, tzinfo=UTC) + timedelta(seconds=settings.VISITOR_TOKEN_MAX_AGE + 60)
    with time_machine.travel(expired, tick=False):
        fresh = _session(world.chatbot.public_key, old["token"])
        assert fresh["visitor"] != old["visitor"]
        assert fresh["state"]["conversation"] != old["state"]["conversation"]
        assert fresh["state"]["last_seq"] == 0
        stale = Client(HTTP_AUTHORIZATION=f"Bearer {old['token']}")
        response = stale.get("/api/widget/events", {"conversation": old["state"]["conversation"]})
        assert response.status_code == 401 and response.json()["code"] == "not_authenticated"


def test_a_real_send_in_a_rolled_back_transaction_pushes_nothing(world: Personas) -> None:
    session = _session(world.chatbot.public_key)
    visitor = Visitor.objects.get(public_id=session["visitor"])

    def rolled_back_then_committed() -> None:
        with contextlib.suppress(RuntimeError), transaction.atomic():
            operations.widget_message(visitor=visitor, client_id="gone", text="never pushed")
            raise RuntimeError("abort")
        operations.widget_message(visitor=visitor, client_id="kept", text="pushed")

    frames = frames_heard(visitor_group(visitor.public_id), rolled_back_then_committed)
    texts = [f.get("text") for f in frames if f["type"] == "event"]
    assert texts == ["pushed"]  # the listener works; the rolled-back message never reached it
    assert list(Event.objects.filter(conversation__visitor=visitor).values_list("text", flat=True)) == ["pushed"]


def test_the_widget_operations_appear_in_the_openapi_schema() -> None:
    schema = Client().get("/api/openapi.json").json()
    operations_by_path = {path: set(item) for path, item in schema["paths"].items()}
    for path, method in [
        ("/api/widget/session", "post"),
        ("/api/widget/events", "get"),
        ("/api/widget/messages", "post"),
        ("/api/widget/handoff", "post"),
        ("/api/widget/handoff/offer", "post"),
        ("/api/widget/lead", "post"),
        ("/api/widget/continue", "post"),
        ("/api/widget/new", "post"),
    ]:
        assert method in operations_by_path.get(path, set()), path
        assert schema["paths"][path][method]["tags"] == ["widget"]


def test_an_invalid_json_body_gets_a_structured_4xx(world: Personas) -> None:
    session = _session(world.chatbot.public_key)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {session['token']}")
    for path in ("/api/widget/messages", "/api/widget/session"):
        response = client.post(path, "{not json", content_type="application/json")
        assert 400 <= response.status_code < 500, (path, response.status_code)
        body = response.json()
        assert set(body) == {"code", "detail"} and body["code"] and body["detail"], body


async def _publish(visitor_id: str, *frames: dict[str, Any]) -> None:
    layer = get_channel_layer()
    for frame in frames:
        await layer.group_send(visitor_group(visitor_id), {"type": "pivra.event", "frame": frame})


def _ai_frames_around_a_handoff(conversation: str, other: str) -> list[dict[str, Any]]:
    """What a worker streaming a reply and a handoff request publish, interleaved as Redis may
    deliver them; ends with an agent typing frame as a marker that everything before was handled."""
    handoff_state = {"conversation": conversation, "status": "handoff", "last_seq": 3, "handoff": None}
    return [
        {"type": "typing", "conversation": conversation, "author": "ai", "on": True},
        {"type": "ai.delta", "conversation": conversation, "reply_to": 1, "text": "before "},
        {"type": "state", "state": handoff_state},
        {"type": "ai.delta", "conversation": conversation, "reply_to": 1, "text": "after"},
        {"type": "typing", "conversation": conversation, "author": "ai", "on": False},
        {"type": "ai.delta", "conversation": other, "reply_to": 1, "text": "other conversation"},
        {"type": "typing", "conversation": conversation, "author": "agent", "on": True},
    ]


def _summary(frames: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [
        (f["type"], f.get("text") or f.get("author", ""))
        for f in frames
        if f["type"] in ("typing", "ai.delta", "state")
    ]


EXPECTED_RELAY = [
    ("typing", "ai"),
    ("ai.delta", "before "),
    ("state", ""),
    ("ai.delta", "other conversation"),  # another conversation of the visitor is still the AI's
    ("typing", "agent"),
]


async def test_the_socket_relays_no_ai_token_after_a_state_that_ended_the_ai_turn(world: Personas) -> None:
    session = await sync_to_async(_session)(world.chatbot.public_key)
    conversation = session["state"]["conversation"]
    socket, _ = await _connect(session["token"], conversation)
    await _publish(session["visitor"], *_ai_frames_around_a_handoff(conversation, str(uuid.uuid4())))
    relayed: list[dict[str, Any]] = []
    while not relayed or relayed[-1].get("author") != "agent":
        relayed.append(await socket.receive_json_from(timeout=5))
    assert _summary(relayed) == EXPECTED_RELAY
    await socket.disconnect()


async def test_a_socket_welcomed_into_a_handoff_relays_no_ai_token(world: Personas) -> None:
    session = await sync_to_async(_session)(world.chatbot.public_key)
    conversation = session["state"]["conversation"]
    visitor = await sync_to_async(Visitor.objects.get)(public_id=session["visitor"])
    await sync_to_async(operations.widget_handoff)(visitor=visitor, client_id="h1")
    socket, welcome = await _connect(session["token"], conversation, last_seq=1)
    assert welcome["state"]["status"] == "handoff"
    await _publish(
        session["visitor"],
        {"type": "ai.delta", "conversation": conversation, "reply_to": 1, "text": "late"},
        {"type": "typing", "conversation": conversation, "author": "agent", "on": True},
    )
    assert (await socket.receive_json_from(timeout=5))["author"] == "agent"
    await socket.disconnect()


async def test_the_sse_stream_relays_no_ai_token_after_a_state_that_ended_the_ai_turn(world: Personas) -> None:
    session = await sync_to_async(_session)(world.chatbot.public_key)
    conversation = session["state"]["conversation"]
    stream = sse_stream(application, token=session["token"], conversation=conversation)
    await stream.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await stream.receive_output(timeout=5)
    assert start["type"] == "http.response.start" and start["status"] == 200
    body = ""

    async def read_until(marker: str) -> None:
        nonlocal body
        while marker not in body:
            body += (await stream.receive_output(timeout=5)).get("body", b"").decode()

    await read_until("event: welcome")
    await _publish(session["visitor"], *_ai_frames_around_a_handoff(conversation, str(uuid.uuid4())))
    await read_until('"author":"agent"')
    frames = [json.loads(line.removeprefix("data: ")) for line in body.splitlines() if line.startswith("data: ")]
    assert _summary(frames) == EXPECTED_RELAY
    await stream.send_input({"type": "http.disconnect"})
    with contextlib.suppress(Exception):
        await stream.wait(timeout=5)


async def test_a_push_reaches_the_socket_while_the_database_thread_is_busy(world: Personas) -> None:
    """Django views and database calls share one thread per process. A push to a socket must not
    queue behind them (channels' stock consumer takes that thread for every message it handles)."""
    session = await sync_to_async(_session)(world.chatbot.public_key)
    socket, _ = await _connect(session["token"], session["state"]["conversation"])
    started, release = threading.Event(), threading.Event()

    def busy_view() -> None:  # a request holding the thread (a burst of them, in production)
        started.set()
        release.wait(30)

    busy = asyncio.ensure_future(sync_to_async(busy_view, thread_sensitive=True)())
    try:
        assert await asyncio.to_thread(started.wait, 10)
        await _publish(session["visitor"], {"type": "typing", "conversation": "c", "author": "agent", "on": True})
        frame = await socket.receive_json_from(timeout=5)
        assert frame["type"] == "typing" and frame["author"] == "agent"
        assert not busy.done()  # it was delivered while the thread was still taken
        await socket.send_input({"type": "websocket.disconnect", "code": 1000})
        ended, _ = await asyncio.wait({socket.future}, timeout=5)
        assert ended and not busy.done()  # and the consumer ended without waiting for it either
    finally:
        release.set()
        await busy
