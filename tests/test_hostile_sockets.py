"""Hostile input over the long-lived channels: both sockets answer NUL, lone surrogates and
5,000-digit numbers with an error frame and stay usable; the SSE stream takes any Last-Event-ID;
a streamed export that fails midway ends the stream and releases the request.

Against the real ASGI app and Redis channel layer; data is committed because consumers reach the
database from their own threads.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from asgiref.testing import ApplicationCommunicator
from channels.testing import WebsocketCommunicator
from django.core.signals import request_finished
from django.test import Client

from conversations import export
from conversations.models import Event
from pivra.asgi import application
from tests.factories import Personas, make_personas
from tests.handoff_helpers import enable_handoff, new_visitor, request, say
from tests.hostile_values import FIVE_THOUSAND_DIGITS

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.timeout(30)]
HOST = [(b"host", b"127.0.0.1:8000")]
ORIGIN = [(b"origin", b"http://127.0.0.1:8000"), *HOST]

# Raw frames (JSON text), since a lone surrogate cannot be sent through json.dumps and back intact.
SURROGATE = "\\ud800"
NUL_ESCAPE = "\\u0000"


def _world() -> tuple[Personas, dict[str, Any]]:
    personas = make_personas()
    enable_handoff(personas.chatbot)
    response = Client().post(
        "/api/widget/session", {"public_key": personas.chatbot.public_key}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    return personas, response.json()


async def _until(socket: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    while True:
        frame: dict[str, Any] = await socket.receive_json_from(timeout=5)
        if frame["type"] == kind:
            return frame


async def test_the_widget_socket_answers_hostile_frames_with_errors_and_stays_usable() -> None:
    _, session = await sync_to_async(_world)()
    socket = WebsocketCommunicator(application, "/ws/widget/", headers=ORIGIN)
    assert (await socket.connect())[0]
    token = session["token"]
    before_hello = [
        f'{{"type": "hello", "token": "{NUL_ESCAPE}"}}',
        f'{{"type": "hello", "token": "{token}", "conversation": "{SURROGATE}"}}',
        f'{{"type": "hello", "token": "{token}", "last_seq": {FIVE_THOUSAND_DIGITS}}}',
    ]
    for raw in before_hello:
        await socket.send_to(text_data=raw)
        error = await _until(socket, "error")
        assert error["code"] in ("invalid_input", "invalid_json"), (raw[:60], error)
    await socket.send_json_to({"type": "hello", "token": token, "last_seq": 10**30})
    assert (await _until(socket, "error"))["code"] == "invalid_input"
    await socket.send_json_to({"type": "hello", "token": token, "last_seq": 0})
    await _until(socket, "welcome")
    after_hello = [
        f'{{"type": "message", "client_id": "m-1", "text": "a{NUL_ESCAPE}b"}}',
        f'{{"type": "message", "client_id": "m-{SURROGATE}", "text": "hi"}}',
        f'{{"type": "handoff.offer_reply", "client_id": "o-1", "offer_seq": {FIVE_THOUSAND_DIGITS}, "accept": true}}',
        '{"type": "handoff.offer_reply", "client_id": "o-1", "offer_seq": 100000000000000000000, "accept": true}',
        '{"type": "message", "client_id": "", "text": "hi"}',
        '{"type": "message", "client_id": "a b", "text": "hi"}',
        '{"type": "handoff.request", "client_id": ""}',
        f'{{"type": "lead", "phone": "+44{NUL_ESCAPE}", "locale": "{SURROGATE}"}}',
        f'{{"type": "page", "url": "https://example.com/{NUL_ESCAPE}"}}',
        '{"type": "ping", "x": ' + "[" * 5000 + "]" * 5000 + "}",  # past json's recursion limit
        '{"type": "ping", "x": ' + "[" * 100 + "]" * 100 + "}",
    ]
    for raw in after_hello:
        await socket.send_to(text_data=raw)
        error = await _until(socket, "error")
        assert error["code"] in ("invalid_input", "invalid_json", "invalid_client_id"), (raw[:60], error)
    await socket.send_json_to({"type": "message", "client_id": "ok-1", "text": "Still here"})
    assert (await _until(socket, "ack"))["client_id"] == "ok-1"
    assert await sync_to_async(Event.objects.filter(author="visitor").count)() == 1
    await socket.disconnect()


def _agent_headers(user: Any) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [*ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


async def test_the_console_socket_answers_hostile_frames_with_errors_and_stays_usable() -> None:
    personas, _ = await sync_to_async(_world)()
    socket = WebsocketCommunicator(
        application, "/ws/console/", headers=await sync_to_async(_agent_headers)(personas.owner)
    )
    assert (await socket.connect())[0]
    await _until(socket, "welcome")
    for raw in (
        f'{{"type": "watch", "conversation": "{NUL_ESCAPE}"}}',
        f'{{"type": "watch", "conversation": "{SURROGATE}"}}',
        f'{{"type": "{NUL_ESCAPE}"}}',
        '{"type": "watch", "conversation": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "last_seq": '
        + FIVE_THOUSAND_DIGITS
        + "}",
        '{"type": "watch", "conversation": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "last_seq": ' + "9" * 4000 + "}",
        '{"type": "watch", "conversation": "3fa85f64-5717-4562-b3fc-2c963f66afa6", "last_seq": 1e400}',
        '{"type": "ping", "x": ' + "[" * 2000 + "]" * 2000 + "}",  # past json's recursion limit
    ):
        await socket.send_to(text_data=raw)
        error = await _until(socket, "error")
        assert error["code"] in ("invalid_input", "invalid_json", "unknown_type", "frame_too_large"), (raw[:60], error)
    await socket.send_json_to({"type": "ping"})
    await _until(socket, "pong")
    await socket.disconnect()


def _with_cookie(headers: list[tuple[bytes, bytes]], cookie: bytes) -> list[tuple[bytes, bytes]]:
    return [*(h for h in headers if h[0] != b"cookie"), (b"cookie", cookie)]


async def test_a_handshake_carrying_nul_or_undecodable_bytes_is_refused_before_any_query() -> None:
    """The HTTP middleware never sees an upgrade: the socket guard refuses it (close code 4400)."""
    personas, _ = await sync_to_async(_world)()
    agent = await sync_to_async(_agent_headers)(personas.owner)
    session = next(value for name, value in agent if name == b"cookie")
    cases: list[tuple[str, list[tuple[bytes, bytes]]]] = [
        # Django unquotes "\000" in a quoted cookie into a NUL: the session lookup was a DataError.
        ("/ws/console/", _with_cookie(agent, b'sessionid="abcdefgh\\000ijklmnop"')),
        ("/ws/console/", _with_cookie(agent, session + b'; other="x\\000"')),
        ("/ws/console/", [*agent, (b"user-agent", b"probe\x00")]),
        ("/ws/console/?x=%00", agent),
        ("/ws/console/?x=%ED%A0%80", agent),  # a lone surrogate, UTF-8 encoded
        ("/ws/console/?x=%FF", agent),
        ("/ws/console/%00", agent),
        ("/ws/widget/?t=%00", ORIGIN),
        ("/ws/widget/", [*ORIGIN, (b"x-probe", b"\x00")]),
    ]
    for path, headers in cases:
        socket = WebsocketCommunicator(application, path, headers=headers)
        assert await socket.connect() == (False, 4400), (path, headers[-1])
        await socket.wait(timeout=5)
    console = WebsocketCommunicator(application, "/ws/console/?x=%C2%B2", headers=agent)  # "²" is fine
    assert (await console.connect())[0]
    await _until(console, "welcome")
    await console.disconnect()


def _http(path: str, *, query: bytes = b"", headers: list[tuple[bytes, bytes]]) -> ApplicationCommunicator:
    return ApplicationCommunicator(
        application,
        {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query,
            "headers": [*HOST, *headers],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        },
    )


async def _whole(app: ApplicationCommunicator) -> tuple[int, bytes]:
    """Status and body of a response that must end by itself (``more_body`` false)."""
    await app.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await app.receive_output(timeout=10)
    assert start["type"] == "http.response.start", start
    body = b""
    while True:
        message = await app.receive_output(timeout=10)
        body += message.get("body", b"")
        if not message.get("more_body", False):
            await app.wait(timeout=10)  # the handler returns only after closing the response
            return start["status"], body


def _header_bytes(value: str) -> bytes:
    """As a client sends it: Django reads header bytes as Latin-1, so "²" (0xB2) arrives as "²"."""
    try:
        return value.encode("latin-1")
    except UnicodeEncodeError:
        return value.encode()


@pytest.mark.parametrize("last_event_id", ["²", "٣", FIVE_THOUSAND_DIGITS, "-1", "1e3", "", "99999999999999999999"])
async def test_the_sse_stream_takes_any_last_event_id(last_event_id: str) -> None:
    _, session = await sync_to_async(_world)()
    stream = _http(
        "/api/widget/stream",
        headers=[
            (b"authorization", f"Bearer {session['token']}".encode()),
            (b"last-event-id", _header_bytes(last_event_id)),
        ],
    )
    await stream.send_input({"type": "http.request", "body": b"", "more_body": False})
    start = await stream.receive_output(timeout=5)
    assert start["type"] == "http.response.start" and start["status"] == 200
    body = b""
    while b"event: welcome" not in body:
        body += (await stream.receive_output(timeout=5)).get("body", b"")
    await stream.send_input({"type": "http.disconnect"})
    with contextlib.suppress(Exception):
        await stream.wait(timeout=5)


async def test_a_nul_in_the_sse_request_is_a_400_that_ends() -> None:
    _, session = await sync_to_async(_world)()
    auth = (b"authorization", f"Bearer {session['token']}".encode())
    status, _ = await _whole(_http("/api/widget/stream", query=b"conversation=a%00b", headers=[auth]))
    assert status == 400
    status, _ = await _whole(_http("/api/widget/stream", headers=[auth, (b"last-event-id", b"1\x00")]))
    assert status == 400


def _failing_parts(*args: Any, **kwargs: Any) -> Iterator[str]:
    yield '{"workspace":"Acme","conversations":[' + " " * export.CHUNK_BYTES  # one whole chunk goes out
    raise RuntimeError("the database went away mid-export")


def _failing_lines(*args: Any, **kwargs: Any) -> Iterator[str]:
    yield "\ufeff"
    yield "conversation,text\r\n"
    yield "c-1," + "a" * export.CHUNK_BYTES + "\r\n"  # one whole chunk goes out
    yield "c-2,buffered and lost\r\n"
    raise RuntimeError("the database went away mid-export")


@pytest.mark.parametrize("fmt", ["csv", "json"])
async def test_an_export_that_fails_midway_ends_the_stream_says_so_and_finishes_the_request(
    monkeypatch: Any, fmt: str
) -> None:
    personas, _ = await sync_to_async(_world)()

    def seed() -> None:
        visitor, conversation = new_visitor(personas.chatbot)
        say(visitor, conversation, "Where is my order?")
        request(visitor, conversation)

    await sync_to_async(seed)()
    finished: list[object] = []

    def on_finished(sender: object, **kwargs: Any) -> None:
        finished.append(sender)

    request_finished.connect(on_finished)
    monkeypatch.setattr(export, "json_parts", _failing_parts)
    monkeypatch.setattr(export, "csv_lines", _failing_lines)
    try:
        cookie = [h for h in await sync_to_async(_agent_headers)(personas.owner) if h[0] == b"cookie"]
        status, body = await _whole(
            _http(f"/dashboard/conversations/export.{fmt}", query=b"tab=handoff", headers=cookie)
        )
    finally:
        request_finished.disconnect(on_finished)
    assert status == 200  # sent with the first chunk, before the failure
    assert finished  # Django closed the response: the database connection went back
    notice = "export incomplete — an error interrupted it; export again"
    if fmt == "csv":
        rows = list(csv.reader(io.StringIO(body.decode("utf-8-sig"))))
        assert rows[0] == ["conversation", "text"]
        assert rows[1][0] == "c-1"
        assert rows[-1] == [notice]  # the last row says the file is incomplete
        assert len(rows) == 3
    else:
        assert body.startswith(b'{"workspace":"Acme"')
        assert body.rstrip().endswith(
            json.dumps(
                {"error": "export_incomplete", "detail": notice}, ensure_ascii=False, separators=(",", ":")
            ).encode()
        )
        with pytest.raises(ValueError):
            json.loads(body)  # cut short: no reader takes it for a whole export
