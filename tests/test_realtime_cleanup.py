"""A widget stream or socket that ends — normally, refused, or through an exception — leaves nothing in
the channel layer, and the SSE stream's keepalive never opens a window in which a frame is lost.

The app runs on the test's event loop, so the test sees the same channel layer (its channels and group
memberships) as the stream and the socket."""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import pytest
import redis.exceptions
from asgiref.sync import sync_to_async
from channels.layers import get_channel_layer
from channels.testing import WebsocketCommunicator
from django.test import Client

from pivra import unavailable
from pivra.asgi import application
from pivra.channel_layer import _LoopLayer
from pivra.realtime import visitor_group
from pivra.unavailable import CLOSE_UNAVAILABLE
from pivra.widget import operations, sse
from tests.factories import make_personas
from tests.handoff_helpers import enable_handoff

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]


def _new_session() -> dict[str, Any]:
    personas = make_personas()
    enable_handoff(personas.chatbot)
    response = Client().post(
        "/api/widget/session", {"public_key": personas.chatbot.public_key}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    return response.json()


def _members(group: str) -> set[str]:
    """The channels of this process in ``group``."""
    layer = get_channel_layer()._get_layer()
    return set(layer.groups.get(layer._get_group_channel_name(group), set()))


def _channels() -> set[str]:
    return set(get_channel_layer()._get_layer().channels)


class Stream:
    """GET /api/widget/stream on the test's loop; ``hold_keepalive`` makes the client slow to take the
    first keepalive, so the test acts while the stream is between two waits."""

    def __init__(self, session: dict[str, Any], *, hold_keepalive: bool = False) -> None:
        self.chunks: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.requests: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        self.requests.put_nowait({"type": "http.request", "body": b"", "more_body": False})
        self.hold_keepalive = hold_keepalive
        self.keepalive_sent = asyncio.Event()
        self.release = asyncio.Event()
        self.body = ""
        conversation = session["state"]["conversation"]
        scope = {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/api/widget/stream",
            "raw_path": b"/api/widget/stream",
            "root_path": "",
            "query_string": f"conversation={conversation}".encode(),
            "headers": [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {session['token']}".encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        }
        self.app = asyncio.ensure_future(application(scope, self.requests.get, self._send))

    async def _send(self, message: dict[str, Any]) -> None:
        await self.chunks.put(message)
        if self.hold_keepalive and b"keepalive" in message.get("body", b"") and not self.keepalive_sent.is_set():
            self.keepalive_sent.set()
            await self.release.wait()

    async def status(self) -> int:
        start = await asyncio.wait_for(self.chunks.get(), 5)
        assert start["type"] == "http.response.start"
        return int(start["status"])

    async def read_until(self, marker: str) -> None:
        async def read() -> None:
            while marker not in self.body:
                self.body += (await self.chunks.get()).get("body", b"").decode()

        await asyncio.wait_for(read(), 5)  # keepalives keep coming: the whole read has the deadline

    async def ended(self) -> bool:
        """True once the stream has sent its last chunk (more_body false) and the app returned."""
        while True:
            chunk = await asyncio.wait_for(self.chunks.get(), 5)
            if chunk["type"] == "http.response.body" and not chunk.get("more_body", False):
                await asyncio.wait_for(self.app, 5)
                return True

    async def disconnect(self) -> None:
        await self.requests.put({"type": "http.disconnect"})
        await asyncio.wait_for(self.app, 5)


async def test_a_frame_sent_right_after_a_keepalive_reaches_the_sse_stream(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sse, "KEEPALIVE_SECONDS", 0.05)
    session = await sync_to_async(_new_session)()
    group = visitor_group(session["visitor"])
    stream = Stream(session, hold_keepalive=True)
    assert await stream.status() == 200
    await stream.read_until("event: welcome")
    (channel,) = _members(group)
    await asyncio.wait_for(stream.keepalive_sent.wait(), 5)
    # A probe in the same group on the same layer: once it has the frame, the layer has handed the
    # frame to every channel of the group in this process — the stream's included, if it still has one.
    layer = get_channel_layer()
    probe = await layer.new_channel()
    await layer.group_add(group, probe)
    frame = {"type": "typing", "conversation": session["state"]["conversation"], "author": "agent", "on": True}
    await layer.group_send(group, {"type": "pivra.event", "frame": frame})
    assert (await asyncio.wait_for(layer.receive(probe), 5))["frame"] == frame
    stream.release.set()
    await stream.read_until('"author":"agent"')
    await stream.disconnect()
    assert _members(group) == {probe}  # the stream left its group and dropped its channel
    assert channel not in _channels()
    await layer.group_discard(group, probe)


async def test_a_stream_refused_after_its_channel_was_made_leaves_nothing(monkeypatch: pytest.MonkeyPatch) -> None:
    session = await sync_to_async(_new_session)()
    group = visitor_group(session["visitor"])

    def replay_fails(**kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("Redis went away during the replay")

    monkeypatch.setattr(operations, "widget_replay", replay_fails)
    before = _channels()
    stream = Stream(session)
    assert await stream.status() == 503
    await asyncio.wait_for(stream.app, 5)
    assert _members(group) == set()
    assert _channels() == before


async def test_a_receive_failing_for_redis_ends_the_stream_with_one_line(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    session = await sync_to_async(_new_session)()
    group = visitor_group(session["visitor"])

    async def receive_fails(self: _LoopLayer, channel: str) -> dict[str, Any]:
        raise redis.exceptions.ConnectionError("Redis went away")

    monkeypatch.setattr(unavailable, "_last_logged", {})  # the line is throttled per place
    monkeypatch.setattr(_LoopLayer, "receive", receive_fails)  # the opening does not receive
    before = _channels()
    with caplog.at_level(logging.WARNING):
        stream = Stream(session)
        assert await stream.status() == 200
        await stream.read_until("event: welcome")
        assert await stream.ended()
    assert [r.getMessage() for r in caplog.records if r.name == "pivra.unavailable"] == [
        "Redis unavailable (widget stream): ConnectionError: Redis went away"
    ]
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert _members(group) == set()
    assert _channels() == before


async def test_a_socket_ended_by_an_unavailability_leaves_its_groups(monkeypatch: pytest.MonkeyPatch) -> None:
    session = await sync_to_async(_new_session)()
    group = visitor_group(session["visitor"])
    socket = WebsocketCommunicator(application, "/ws/widget/", headers=ORIGIN)
    assert (await socket.connect())[0]
    hello = {"type": "hello", "token": session["token"], "conversation": None, "last_seq": 0}
    await socket.send_json_to(hello)
    assert (await socket.receive_json_from(timeout=5))["type"] == "welcome"
    assert len(_members(group)) == 1

    def message_fails(**kwargs: Any) -> Any:
        raise redis.exceptions.ConnectionError("Redis went away")

    monkeypatch.setattr(operations, "widget_message", message_fails)
    await socket.send_json_to({"type": "message", "client_id": "m-1", "text": "Anyone there?"})
    assert (await socket.receive_json_from(timeout=5))["code"] == "unavailable"
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": CLOSE_UNAVAILABLE}
    await socket.wait(timeout=5)
    assert _members(group) == set()
