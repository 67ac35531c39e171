"""The console socket's ``note`` command: the service's answers over the socket, refusals with the
frame's ``client_id``, and the live ``note`` / ``note.mention`` frames. Against the real ASGI app,
Redis channel layer and PostgreSQL (committed data: the consumer runs on its own threads)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from conversations.models import Note
from pivra.asgi import application
from tests.factories import Personas, make_personas
from tests.handoff_helpers import new_visitor
from tests.test_console_socket_commands import _close_command_connections

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]


@pytest.fixture(autouse=True)
def _command_connections_back() -> Iterator[None]:
    yield
    _close_command_connections()


def _world() -> tuple[Personas, str]:
    personas = make_personas()
    _, conversation = new_visitor(personas.chatbot)
    return personas, str(conversation.public_id)


def _session_key(user: User) -> str:
    client = Client()
    client.force_login(user)
    return str(client.cookies["sessionid"].value)


async def _console(user: User) -> WebsocketCommunicator:
    key = await sync_to_async(_session_key)(user)
    socket = WebsocketCommunicator(
        application, "/ws/console/", headers=[*ORIGIN, (b"cookie", f"sessionid={key}".encode())]
    )
    assert (await socket.connect())[0]
    assert (await socket.receive_json_from(timeout=5))["type"] == "welcome"
    return socket


async def _until(socket: WebsocketCommunicator, wanted: str, client_id: str | None = None) -> dict[str, Any]:
    while True:
        frame = await socket.receive_json_from(timeout=10)
        if frame.get("type") == wanted and (client_id is None or frame.get("client_id") == client_id):
            return frame


def _note(conversation: str, client_id: str, text: str = "Check the order @teammate") -> dict[str, Any]:
    return {"type": "note", "conversation_id": conversation, "text": text, "client_id": client_id}


async def test_a_note_over_the_socket_is_acked_stored_once_and_shown_live() -> None:
    world, conversation = await sync_to_async(_world)()
    author = await _console(world.owner)
    await author.send_json_to({"type": "watch", "conversation": conversation, "last_seq": 0})
    await _until(author, "watching")
    mentioned = await _console(world.teammate)

    await author.send_json_to(_note(conversation, "n-1"))
    ack = await _until(author, "ack", "n-1")
    assert (ack["duplicate"], ack["note"]["text"], ack["note"]["mentions"]) == (
        False,
        "Check the order @teammate",
        [world.teammate.pk],
    )
    live = await _until(author, "note")
    assert (live["conversation"], live["workspace"], live["note"]["id"]) == (
        conversation,
        world.workspace.pk,
        ack["note"]["id"],
    )
    notice = await _until(mentioned, "note.mention")
    assert notice["note"] == {"id": ack["note"]["id"], "author_name": "owner", "text": "Check the order @teammate"}
    assert (
        notice["workspace"] == world.workspace.pk and notice["url"] == f"/dashboard/notifications/open/{conversation}/"
    )

    await author.send_json_to(_note(conversation, "n-1"))
    again = await _until(author, "ack", "n-1")
    assert (again["duplicate"], again["note"]["id"]) == (True, ack["note"]["id"])
    assert await sync_to_async(Note.objects.count)() == 1
    await author.disconnect()
    await mentioned.disconnect()


async def test_refusals_name_the_client_id_and_store_nothing() -> None:
    world, conversation = await sync_to_async(_world)()
    outsider = await _console(world.outsider)
    await outsider.send_json_to(_note(conversation, "x-1"))
    refused = await _until(outsider, "error", "x-1")
    assert refused["code"] == "conversation_not_found"
    member = await _console(world.teammate)
    for client_id, text, code in (("e-1", "   ", "note_empty"), ("e-2", "y" * 2001, "note_too_long")):
        await member.send_json_to(_note(conversation, client_id, text))
        assert (await _until(member, "error", client_id))["code"] == code
    assert not await sync_to_async(Note.objects.exists)()
    await outsider.disconnect()
    await member.disconnect()
