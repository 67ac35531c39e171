"""Typing and read state over the real sockets (ASGI app, Redis channel layer): the agent's typing reaches
the visitor's widget socket and SSE stream as the widget's ``typing`` frame with the agent's public name,
only from the agent holding the live chat; the visitor's typing and "seen" reach the console watching the
conversation (the preview text only with the owner's setting on); the agent's read mark reaches their own
console; floods are dropped per socket."""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any
from unittest import mock

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.db.backends.utils import CursorWrapper
from django.test import Client

from chatbots.models import Chatbot
from conversations.models import Conversation, ConversationRead
from handoff.transitions.claim import handoff_claim
from pivra.asgi import application
from pivra.console import live_marks
from pivra.widget import live as widget_live
from tests.channel_helpers import sse_stream
from tests.factories import Personas, make_personas
from tests.handoff_helpers import enable_handoff, request

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]


def _world() -> Personas:
    personas = make_personas()
    personas.owner.first_name = "Alice"
    personas.owner.save(update_fields=["first_name"])
    enable_handoff(personas.chatbot)
    return personas


def _session(public_key: str) -> dict[str, Any]:
    response = Client().post("/api/widget/session", {"public_key": public_key}, content_type="application/json")
    assert response.status_code == 200, response.content
    return response.json()


def _claimed(world: Personas, session: dict[str, Any]) -> str:
    """The session's conversation in a live chat held by the owner (Alice)."""
    conversation = Conversation.objects.select_related("visitor").get(public_id=session["state"]["conversation"])
    request(conversation.visitor, conversation)
    handoff_claim(agent=world.owner, conversation_public_id=str(conversation.public_id))
    return str(conversation.public_id)


def _console_headers(user: Any) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [*ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


async def _console(user: Any, watch: str | None = None) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(application, "/ws/console/", headers=await sync_to_async(_console_headers)(user))
    assert (await socket.connect())[0]
    assert (await socket.receive_json_from(timeout=5))["type"] == "welcome"
    if watch:
        await socket.send_json_to({"type": "watch", "conversation": watch, "last_seq": 10_000})
        await _until(socket, lambda f: f["type"] == "watching")
    return socket


async def _widget(token: str, conversation: str) -> WebsocketCommunicator:
    socket = WebsocketCommunicator(application, "/ws/widget/", headers=ORIGIN)
    assert (await socket.connect())[0]
    await socket.send_json_to({"type": "hello", "token": token, "conversation": conversation, "last_seq": 10_000})
    assert (await socket.receive_json_from(timeout=5))["type"] == "welcome"
    return socket


async def _until(socket: WebsocketCommunicator, predicate, wait: float = 5) -> dict:
    while True:
        frame = await socket.receive_json_from(timeout=wait)
        if predicate(frame):
            return frame


async def _nothing_but_pong(socket: WebsocketCommunicator) -> list[dict]:
    """Every frame the socket gets before the answer to a ping sent now (frames are delivered in order),
    but ``presence`` (another test socket's console coming online is no answer to anything here)."""
    await socket.send_json_to({"type": "ping"})
    heard = []
    while (frame := await socket.receive_json_from(timeout=5))["type"] != "pong":
        if frame["type"] != "presence":
            heard.append(frame)
    return heard


async def _drain(socket: WebsocketCommunicator, quiet: float = 1.0) -> list[dict]:
    """Every frame the socket gets until none has come for ``quiet`` seconds: what other sockets
    published through Redis may arrive after a ping sent to this one is answered."""
    heard = []
    while not await socket.receive_nothing(timeout=quiet):
        heard.append(await socket.receive_json_from())
    return heard


async def _setup() -> tuple[Personas, dict[str, Any], str]:
    world = await sync_to_async(_world)()
    session = await sync_to_async(_session)(world.chatbot.public_key)
    conversation = await sync_to_async(_claimed)(world, session)
    return world, session, conversation


async def test_the_claimants_typing_reaches_the_widget_with_their_public_name_and_nobody_elses() -> None:
    world, session, conversation = await _setup()
    widget = await _widget(session["token"], conversation)
    alice = await _console(world.owner)
    colleague = await _console(world.teammate)

    await colleague.send_json_to({"type": "typing", "conversation_id": conversation, "on": True})
    assert await _nothing_but_pong(colleague) == []  # refused quietly: no answer
    await alice.send_json_to({"type": "typing", "conversation_id": conversation, "on": True})
    await _nothing_but_pong(alice)
    typing = await _until(widget, lambda f: f["type"] == "typing")
    assert typing == {"type": "typing", "conversation": conversation, "author": "agent", "on": True, "agent": "Alice"}
    await alice.send_json_to({"type": "typing", "conversation_id": conversation, "on": False})
    assert (await _until(widget, lambda f: f["type"] == "typing"))["on"] is False
    assert await _nothing_but_pong(widget) == []  # the colleague's never arrived
    for socket in (widget, alice, colleague):
        await socket.disconnect()


async def test_an_outsider_cannot_type_into_another_workspaces_conversation() -> None:
    world, session, conversation = await _setup()
    widget = await _widget(session["token"], conversation)
    outsider = await _console(world.outsider)
    await outsider.send_json_to({"type": "typing", "conversation_id": conversation, "on": True})
    assert await _nothing_but_pong(outsider) == []
    assert await _nothing_but_pong(widget) == []
    await widget.disconnect()
    await outsider.disconnect()


async def test_a_typing_flood_is_dropped_per_socket() -> None:
    world, session, conversation = await _setup()
    widget = await _widget(session["token"], conversation)
    alice = await _console(world.owner)
    for _ in range(40):
        await alice.send_json_to({"type": "typing", "conversation_id": conversation, "on": True})
    await _nothing_but_pong(alice)
    relayed = [f for f in await _drain(widget) if f["type"] == "typing"]
    # The burst, and what the budget refilled while 40 frames were read: far fewer than 40.
    assert live_marks.TYPING_BURST <= len(relayed) <= live_marks.TYPING_BURST + 5
    await widget.disconnect()
    await alice.disconnect()


async def test_the_agents_typing_reaches_the_sse_stream_too() -> None:
    world, session, conversation = await _setup()
    stream = sse_stream(application, token=session["token"], conversation=conversation)
    await stream.send_input({"type": "http.request", "body": b"", "more_body": False})
    assert (await stream.receive_output(timeout=5))["status"] == 200
    body = ""
    while "event: welcome" not in body:
        body += (await stream.receive_output(timeout=5)).get("body", b"").decode()
    alice = await _console(world.owner)
    await alice.send_json_to({"type": "typing", "conversation_id": conversation, "on": True})
    while "event: typing" not in body:
        body += (await stream.receive_output(timeout=5)).get("body", b"").decode()
    frames = [json.loads(line[6:]) for line in body.splitlines() if line.startswith("data: ")]
    assert {"type": "typing", "conversation": conversation, "author": "agent", "on": True, "agent": "Alice"} in frames
    await stream.send_input({"type": "http.disconnect"})
    with contextlib.suppress(Exception):
        await stream.wait(timeout=5)
    await alice.disconnect()


async def test_visitor_typing_reaches_the_watching_console_with_text_only_when_the_owner_allows() -> None:
    world, session, conversation = await _setup()
    widget = await _widget(session["token"], conversation)
    console = await _console(world.teammate, watch=conversation)

    await widget.send_json_to({"type": "typing", "conversation": conversation, "on": True, "text": "my password is"})
    frame = await _until(console, lambda f: f["type"] == "typing")
    assert frame == {
        "type": "typing",
        "conversation": conversation,
        "author": "visitor",
        "on": True,
        "workspace": world.workspace.pk,
    }  # no text: the preview is off by default

    await sync_to_async(Chatbot.objects.filter(pk=world.chatbot.pk).update)(typing_preview=True)
    await widget.send_json_to({"type": "typing", "conversation": conversation, "on": True, "text": "Hi <b>there</b>"})
    assert (await _until(console, lambda f: f["type"] == "typing"))["text"] == "Hi <b>there</b>"
    await widget.disconnect()
    await console.disconnect()


async def test_seen_reaches_the_console_and_read_reaches_only_the_agents_own_consoles() -> None:
    world, session, conversation = await _setup()
    widget = await _widget(session["token"], conversation)
    console = await _console(world.teammate, watch=conversation)
    owner = await _console(world.owner, watch=conversation)

    await widget.send_json_to({"type": "seen", "conversation": conversation, "seq": 2})
    seen = await _until(console, lambda f: f["type"] == "seen")
    assert seen == {"type": "seen", "conversation": conversation, "seq": 2, "workspace": world.workspace.pk}
    stored = await sync_to_async(Conversation.objects.values_list("visitor_seen_seq", flat=True).get)(
        public_id=conversation
    )
    assert stored == 2

    await console.send_json_to({"type": "read", "conversation_id": conversation, "seq": 2})
    read = await _until(console, lambda f: f["type"] == "read")
    assert read == {"type": "read", "conversation": conversation, "last_read_seq": 2, "workspace": world.workspace.pk}
    assert [f for f in await _nothing_but_pong(owner) if f["type"] == "read"] == []
    row = await sync_to_async(ConversationRead.objects.get)(user=world.teammate)
    assert row.last_read_seq == 2
    for socket in (widget, console, owner):
        await socket.disconnect()


# --- review fixes -----------------------------------------------------------------------------


@contextlib.contextmanager
def _queries() -> Iterator[list[str]]:
    """Every SQL statement run meanwhile, on any thread (the sockets' database calls run on their own)."""
    statements: list[str] = []
    original = CursorWrapper.execute

    def execute(self: CursorWrapper, sql: str, params: Any = None) -> Any:
        statements.append(sql)
        return original(self, sql, params)

    with mock.patch.object(CursorWrapper, "execute", execute):
        yield statements


async def test_a_console_typing_or_read_frame_is_one_query_without_a_session_read() -> None:
    world, session, conversation = await _setup()
    widget = await _widget(session["token"], conversation)
    alice = await _console(world.owner, watch=conversation)  # the read frame's broadcast needs no lookup
    with _queries() as typing_sql:
        await alice.send_json_to({"type": "typing", "conversation_id": conversation, "on": True})
        await _until(widget, lambda f: f["type"] == "typing")  # its one query ran before the publish
    assert len(typing_sql) == 1, typing_sql  # the claim check only: no session or user load per frame
    with _queries() as read_sql:
        await alice.send_json_to({"type": "read", "conversation_id": conversation, "seq": 2})
        await _until(alice, lambda f: f["type"] == "read")
    assert len(read_sql) == 1 and "ON CONFLICT" in read_sql[0], read_sql
    await widget.disconnect()
    await alice.disconnect()


async def test_a_visitors_sockets_share_one_typing_budget(monkeypatch) -> None:
    world, session, conversation = await _setup()
    console = await _console(world.teammate, watch=conversation)
    monkeypatch.setattr(widget_live, "TYPING_PER_MINUTE", 3)  # the visitor's budget, over every socket and HTTP
    sockets = [await _widget(session["token"], conversation) for _ in range(3)]
    for socket in sockets:  # 2 each: well within each socket's own burst
        for on in (True, False):
            await socket.send_json_to({"type": "typing", "conversation": conversation, "on": on})
        assert await _nothing_but_pong(socket) == []  # over budget: dropped, never answered
    relayed = [f for f in await _drain(console) if f["type"] == "typing"]
    assert len(relayed) == 3
    for socket in (*sockets, console):
        await socket.disconnect()


async def test_a_failing_typing_or_seen_frame_never_answers_the_visitor(monkeypatch, caplog) -> None:
    _, session, conversation = await _setup()
    widget = await _widget(session["token"], conversation)

    def broken(**_: Any) -> None:
        raise RuntimeError("what the visitor typed")

    monkeypatch.setattr(widget_live, "widget_typing_frame", broken)
    monkeypatch.setattr(widget_live, "conversation_mark_seen_by_visitor", broken)
    await widget.send_json_to({"type": "typing", "conversation": conversation, "on": True, "text": "secret"})
    await widget.send_json_to({"type": "seen", "conversation": conversation, "seq": 2})
    assert await _nothing_but_pong(widget) == []  # no error notice in front of the visitor; the socket stays
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert "widget typing frame failed" in logged and "widget seen frame failed" in logged
    assert "secret" not in logged and "what the visitor typed" not in logged
    await widget.disconnect()


async def test_seen_frames_have_a_per_socket_budget_and_cost_one_query(monkeypatch) -> None:
    _, session, conversation = await _setup()
    widget = await _widget(session["token"], conversation)
    with _queries() as one:
        await widget.send_json_to({"type": "seen", "conversation": conversation, "seq": 1})
        await _nothing_but_pong(widget)
    assert len(one) == 1 and one[0].lstrip().upper().startswith("UPDATE"), one  # no visitor load

    marks: list[int] = []
    original = widget_live.conversation_mark_seen_by_visitor

    def counted(**kwargs: Any) -> int | None:
        marks.append(kwargs["seq"])
        return original(**kwargs)

    monkeypatch.setattr(widget_live, "conversation_mark_seen_by_visitor", counted)
    for seq in range(2, 22):  # 20 reports, under the visitor's per-minute budget of 30
        await widget.send_json_to({"type": "seen", "conversation": conversation, "seq": seq})
    await _nothing_but_pong(widget)
    # The socket's burst (one was spent above) and what refilled while they were read: far fewer than 20.
    assert widget_live.SEEN_BURST - 1 <= len(marks) <= widget_live.SEEN_BURST + 2
    await widget.disconnect()
