"""The resolved screen's socket frames: ``rate`` and ``transcript``, acked or refused with a code,
against the real ASGI app and channel layer (transactional: consumers use their own threads)."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from conversations import transcript_send
from conversations.models import Conversation
from pivra.asgi import application
from pivra.widget.tokens import visitor_token
from tests.factories import Personas
from tests.test_ratings import resolved

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]


async def _until(socket: WebsocketCommunicator, kind: str) -> dict[str, Any]:
    while True:
        frame = await socket.receive_json_from(timeout=5)
        if frame["type"] == kind:
            return frame


async def test_rate_and_transcript_frames(personas: Personas, monkeypatch: pytest.MonkeyPatch) -> None:
    conversation: Conversation = await sync_to_async(resolved)(personas.chatbot, agent=personas.owner)
    sent: list[Any] = []
    monkeypatch.setattr(
        transcript_send.current_app,
        "send_task",
        lambda name, args=(), **_: sent.append(args) if name == transcript_send.TASK_NAME else None,
    )
    token = await sync_to_async(lambda: visitor_token(conversation.visitor))()
    key = str(conversation.public_id)
    socket = WebsocketCommunicator(application, "/ws/widget/", headers=ORIGIN)
    assert (await socket.connect())[0]
    await socket.send_json_to({"type": "hello", "token": token, "conversation": key, "last_seq": 0})
    welcome = await _until(socket, "welcome")
    assert welcome["state"]["survey"] == {"scale": "thumbs", "score": None}

    await socket.send_json_to({"type": "rate", "client_id": "r-1", "conversation": key, "score": 1, "comment": "Meh"})
    ack = await _until(socket, "ack")
    event = await _until(socket, "event")
    assert ack["client_id"] == "r-1" and ack["seq"] == event["seq"]
    assert (event["kind"], event["data"]) == ("rating", {"score": 1, "scale": "thumbs", "comment": "Meh"})
    await socket.send_json_to({"type": "rate", "client_id": "r-2", "conversation": key, "score": 5})
    refused = await _until(socket, "error")
    assert (refused["code"], refused["client_id"]) == ("already_rated", "r-2")
    await socket.send_json_to({"type": "rate", "client_id": "r-3", "score": 7})
    assert (await _until(socket, "error"))["code"] == "invalid_input"
    await socket.send_json_to({"type": "rate", "client_id": "r-4", "score": True})  # JSON true is not 1
    assert (await _until(socket, "error"))["code"] == "invalid_input"

    await socket.send_json_to({"type": "transcript", "client_id": "t-1", "conversation": key, "email": "nope"})
    bad = await _until(socket, "error")
    assert (bad["code"], bad["client_id"], bad["detail"]) == (
        "invalid_email",
        "t-1",
        "Please enter a valid email address.",
    )
    # Addresses Django's validator alone would take: a host without a dot, an IP literal.
    for i, local in enumerate(["a@localhost", "a@[127.0.0.1]"]):
        await socket.send_json_to({"type": "transcript", "client_id": f"t-x{i}", "conversation": key, "email": local})
        assert (await _until(socket, "error"))["code"] == "invalid_email"
    await socket.send_json_to({"type": "transcript", "client_id": "t-2", "conversation": key, "email": "v@example.com"})
    assert await _until(socket, "ack") == {"type": "ack", "client_id": "t-2", "email": "v@example.com"}
    await socket.disconnect()
    assert [args[:2] for args in sent] == [[conversation.pk, "v@example.com"]]
