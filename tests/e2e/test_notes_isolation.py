"""Acceptance: an internal note never reaches any visitor channel, and is shown to agents.

Against the real stack (daphne, Celery worker and beat, Redis, PostgreSQL — ``live_stack``), with
real sockets: the visitor's widget WebSocket (live frames, and the hello replay of a reconnect), the
SSE stream (live, and its replay from Last-Event-ID 0) and ``GET /api/widget/events``; the agents'
console sockets. A note is written over the console API and over the console socket, with an
@mention; then the agent replies, and the widget and the stream get that reply — proof they were
listening — but not one frame about the note. The transcript, the exports, the outbox's payloads and
the AI's prompt are read for the note's text too.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
import uuid
from collections.abc import Callable, Coroutine, Iterator
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.test import Client

from actions.models import OutboxEvent
from bench.wsclient import WebSocket, ws_connect
from conversations import ai, notes
from conversations.models import Conversation, Event, Note
from conversations.notes import note_create
from conversations.services import conversation_lock, event_append
from conversations.transcript import transcript_render
from handoff.transitions.claim import handoff_claim
from handoff.transitions.reply import handoff_reply
from handoff.transitions.resolve import handoff_resolve
from pivra.stack import AppProcesses
from tests.e2e.widget_helpers import seed_demo
from tests.factories import make_personas
from tests.handoff_helpers import new_visitor

pytestmark = pytest.mark.django_db(transaction=True)
T = TypeVar("T")
WAIT = 20.0  # s: a generous wait for a frame on a loaded machine; never a speed check
SECRET = "NOTE-7f3a refund fraud suspected, do not tell the visitor"
SOCKET_SECRET = "NOTE-9c1e second note sent over the console socket"
SECRETS = ("NOTE-7f3a", "NOTE-9c1e")


class Loop:
    """An event loop on a thread of its own holding the test's WebSockets, while the test's thread
    calls services and HTTP."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=60)

    def send(self, ws: WebSocket, frame: dict[str, Any]) -> None:
        self.loop.call_soon_threadsafe(ws.send_json, frame)

    def stop(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


@pytest.fixture
def loop() -> Iterator[Loop]:
    running = Loop()
    yield running
    running.stop()


def _open(loop: Loop, base: str, path: str, frames: list[dict[str, Any]], *, cookie: str = "") -> WebSocket:
    url = urlsplit(base)
    # The benchmark's client sends no cookie: a console socket's session cookie rides as one more
    # header line after the Origin (a test-only shortcut; the server reads headers, not their order).
    origin = f"{base}\r\nCookie: {cookie}" if cookie else base
    return loop.run(
        ws_connect(
            str(url.hostname), int(url.port or 80), path, origin=origin, on_frame=lambda _ws, f, _t: frames.append(f)
        )
    )


def _until(frames: list[dict[str, Any]], predicate: Callable[[dict[str, Any]], bool], what: str) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT
    while time.monotonic() < deadline:
        for frame in list(frames):
            if predicate(frame):
                return frame
        time.sleep(0.05)
    raise AssertionError(f"no {what} within {WAIT:g} s; got {[f.get('type') for f in frames]}")


def _note_with(text: str) -> Callable[[dict[str, Any]], bool]:
    return lambda frame: frame.get("type") == "note" and frame["note"]["text"] == text


def _leaks(frames: list[Any]) -> list[Any]:
    """Every frame that names a note or carries a note's text."""
    return [
        f
        for f in frames
        if any(secret in json.dumps(f) for secret in SECRETS)
        or (isinstance(f, dict) and str(f.get("type", "")).startswith("note"))
    ]


class SseReader:
    """``GET /api/widget/stream`` on a thread: every ``data:`` frame, parsed, until closed."""

    def __init__(self, base: str, token: str, conversation: str, last_event_id: str | None = None) -> None:
        self.frames: list[dict[str, Any]] = []
        self.client = httpx.Client(timeout=httpx.Timeout(10, read=None))
        headers = {"Authorization": f"Bearer {token}"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        self.request = (f"{base}/api/widget/stream", {"conversation": conversation}, headers)
        self.thread = threading.Thread(target=self._read, daemon=True)
        self.thread.start()

    def _read(self) -> None:
        url, params, headers = self.request
        try:
            with self.client.stream("GET", url, params=params, headers=headers) as response:
                for line in response.iter_lines():
                    if line.startswith("data: "):
                        self.frames.append(json.loads(line[6:]))
        except (httpx.HTTPError, RuntimeError):
            pass  # closed by the test

    def close(self) -> None:
        self.client.close()


def _session_cookie(user: User) -> str:
    client = Client()
    client.force_login(user)
    return f"sessionid={client.cookies['sessionid'].value}"


def test_a_note_reaches_agents_and_no_visitor_channel(live_stack: AppProcesses, loop: Loop) -> None:
    base = live_stack.http_url
    bot = seed_demo()
    alice, bob = User.objects.get(username="alice"), User.objects.get(username="bob")
    session = httpx.post(f"{base}/api/widget/session", json={"public_key": bot.public_key}, timeout=10).json()
    token, key = session["token"], session["state"]["conversation"]
    auth = {"Authorization": f"Bearer {token}"}
    hello = {"type": "hello", "token": token, "conversation": key, "last_seq": 0}
    said = httpx.post(f"{base}/api/widget/messages", json={"client_id": "v1", "text": "Hi"}, headers=auth, timeout=10)
    assert said.status_code == 200, said.text
    assert httpx.post(f"{base}/api/widget/handoff", json={"client_id": "h1"}, headers=auth, timeout=10).is_success
    handoff_claim(agent=alice, conversation_public_id=key)

    # The visitor: the widget socket and the SSE stream, both open before the notes are written.
    widget: list[dict[str, Any]] = []
    widget_ws = _open(loop, base, "/ws/widget/", widget)
    loop.send(widget_ws, hello)
    _until(widget, lambda f: f.get("type") == "welcome", "widget welcome")
    stream = SseReader(base, token, key)
    _until(stream.frames, lambda f: f.get("type") == "welcome", "SSE welcome")

    # The agents: Alice watches the conversation; Bob, mentioned, is on another page.
    watching: list[dict[str, Any]] = []
    alice_ws = _open(loop, base, "/ws/console/", watching, cookie=_session_cookie(alice))
    _until(watching, lambda f: f.get("type") == "welcome", "console welcome")
    loop.send(alice_ws, {"type": "watch", "conversation": key, "last_seq": 0})
    _until(watching, lambda f: f.get("type") == "watching", "watching")
    bobs: list[dict[str, Any]] = []
    _open(loop, base, "/ws/console/", bobs, cookie=_session_cookie(bob))
    _until(bobs, lambda f: f.get("type") == "welcome", "Bob's console welcome")

    # A note over the console API (with the CSRF check of any console POST), one over the socket.
    csrf = "x" * 32
    api = httpx.post(
        f"{base}/api/console/conversations/{key}/notes",
        json={"client_id": "n-api", "text": f"{SECRET} @bob"},
        headers={"X-CSRFToken": csrf, "Cookie": f"{_session_cookie(alice)}; csrftoken={csrf}"},
        timeout=10,
    )
    assert api.status_code == 201, api.text
    loop.send(alice_ws, {"type": "note", "conversation_id": key, "text": SOCKET_SECRET, "client_id": "n-ws"})
    ack = _until(watching, lambda f: f.get("type") == "ack" and f.get("client_id") == "n-ws", "note ack")
    assert ack["note"]["text"] == SOCKET_SECRET and ack["duplicate"] is False

    # Shown to the agents: both notes to the watcher, the mention to Bob wherever he is.
    live_notes = [_until(watching, _note_with(text), "note frame") for text in (f"{SECRET} @bob", SOCKET_SECRET)]
    assert all(frame["conversation"] == key and frame["workspace"] == bot.workspace_id for frame in live_notes)
    mention = _until(bobs, lambda f: f.get("type") == "note.mention", "mention notice")
    assert mention["conversation"] == key and mention["note"]["author_name"] == "Alice"
    assert mention["url"] == f"/dashboard/notifications/open/{key}/"

    # Then the agent replies: the visitor's channels were listening and get it, in order after the notes.
    reply = handoff_reply(agent=alice, conversation_public_id=key, text="How can I help?", client_id="r1").event
    _until(widget, lambda f: f.get("type") == "event" and f.get("seq") == reply.seq, "the reply on the widget")
    _until(stream.frames, lambda f: f.get("type") == "event" and f.get("seq") == reply.seq, "the reply on SSE")

    # The hello replay of a reconnect, and SSE from Last-Event-ID 0: the whole thread, no note.
    replayed: list[dict[str, Any]] = []
    again = _open(loop, base, "/ws/widget/", replayed)
    loop.send(again, hello)
    _until(replayed, lambda f: f.get("type") == "event" and f.get("seq") == reply.seq, "the replay")
    resumed = SseReader(base, token, key, last_event_id="0")
    _until(resumed.frames, lambda f: f.get("type") == "event" and f.get("seq") == reply.seq, "the SSE replay")
    events = httpx.get(f"{base}/api/widget/events", params={"after_seq": 0}, headers=auth, timeout=10)
    assert events.status_code == 200 and any(e["seq"] == reply.seq for e in events.json()["events"])
    stream.close()
    resumed.close()

    for channel, frames in {
        "widget socket": widget,
        "widget replay": replayed,
        "SSE": stream.frames,
        "SSE replay": resumed.frames,
        "events API": [events.json()],
    }.items():
        assert not _leaks(frames), f"a note reached the visitor's {channel}: {_leaks(frames)}"
    # The visitor's seqs stay gap-free: a note takes none.
    seqs = [f["seq"] for f in replayed if f.get("type") == "event"]
    assert seqs == list(range(1, reply.seq + 1))

    conversation = Conversation.objects.get(public_id=key)
    assert Note.objects.filter(conversation=conversation).count() == 2
    assert not Event.objects.filter(conversation=conversation, text__contains="NOTE-").exists()
    subject, text, html = transcript_render(conversation=conversation)
    assert not _leaks([subject, text, html]) and "How can I help?" in text
    owner = Client()
    owner.force_login(alice)
    for fmt in ("csv", "json"):
        response = owner.get(f"/dashboard/conversations/{key}/export.{fmt}")
        exported = b"".join(response.streaming_content).decode()  # type: ignore[attr-defined]
        assert "How can I help?" in exported and not _leaks([exported])
    # Webhook, Slack and email payloads are the outbox's snapshots (resolved included: the last one).
    handoff_resolve(agent=alice, conversation_public_id=key)
    outbox = list(OutboxEvent.objects.values_list("payload", flat=True))
    assert any(p["type"] == "handoff.resolved" for p in outbox) and not _leaks(outbox)


class Recorder:
    """A responder that records what the AI is given (the question and the history) and answers."""

    def __init__(self) -> None:
        self.seen: list[Any] = []

    def stream(self, *, question: str, history: list[Any]) -> Iterator[str]:
        self.seen.append({"question": question, "history": [turn.text for turn in history]})
        yield "An answer."


def _visitor_says(conversation: Conversation, text: str) -> Event:
    """A visitor message without queueing the AI (the stack's worker must not answer it first)."""
    with transaction.atomic():
        locked = conversation_lock(conversation_id=conversation.pk)
        return event_append(conversation=locked, kind="message", author=Event.Author.VISITOR, text=text)


def test_the_ais_prompt_never_holds_a_note(monkeypatch: pytest.MonkeyPatch) -> None:
    personas = make_personas()
    _, conversation = new_visitor(personas.chatbot)
    _visitor_says(conversation, "Hi")
    note_create(conversation=conversation, author=personas.owner, text=SECRET, client_id=None)
    question = _visitor_says(conversation, "What are your hours?")
    recorder = Recorder()
    monkeypatch.setattr(ai, "responder_for", lambda _bot: recorder)
    stored = ai.conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=question.seq)
    assert stored is not None and stored.text == "An answer."
    assert recorder.seen and recorder.seen[0]["question"] == "What are your hours?"
    assert "Hi" in recorder.seen[0]["history"]  # the history is there, the note is not
    assert not _leaks(recorder.seen)


def test_a_note_is_broadcast_to_console_groups_only(monkeypatch: pytest.MonkeyPatch) -> None:
    """The service's only broadcast groups: the conversation's watchers and each mentioned member."""
    personas = make_personas()
    _, conversation = new_visitor(personas.chatbot)
    sent: list[tuple[list[str], dict[str, Any]]] = []
    monkeypatch.setattr(notes, "send_on_commit", lambda groups, frame: sent.append((list(groups), frame)))
    note_create(
        conversation=conversation, author=personas.owner, text=f"{SECRET} @teammate", client_id=str(uuid.uuid4())
    )
    groups = [group for batch, _ in sent for group in batch]
    assert groups == [f"conv.{conversation.public_id}", f"console-user.{personas.teammate.pk}"]
    assert [frame["type"] for _, frame in sent] == ["note", "note.mention"]
