"""The console socket: session auth, the queue feed with unclaimed counts, watching a conversation
with replay after ``last_seq``, unwatch, ping, and readable errors for bad frames.

Against the real ASGI app and Redis channel layer; data is committed because consumers read the
database from their own threads."""

from __future__ import annotations

from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from chatbots.models import Membership
from chatbots.services import membership_add
from handoff.transitions.claim import handoff_claim
from handoff.transitions.reply import handoff_reply
from pivra.asgi import application
from tests.factories import Personas, make_chatbot, make_personas, make_workspace
from tests.handoff_helpers import enable_handoff, new_visitor, request, say

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]


def _world() -> Personas:
    personas = make_personas()
    enable_handoff(personas.chatbot)
    return personas


def _headers(user: Any) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [*ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


async def _connect(user: Any) -> tuple[WebsocketCommunicator, dict]:
    socket = WebsocketCommunicator(application, "/ws/console/", headers=await sync_to_async(_headers)(user))
    connected, _ = await socket.connect()
    assert connected
    welcome = await socket.receive_json_from(timeout=5)
    assert welcome["type"] == "welcome", welcome
    return socket, welcome


async def _until(socket: WebsocketCommunicator, predicate, wait: float = 5) -> dict:
    while True:
        frame = await socket.receive_json_from(timeout=wait)
        if predicate(frame):
            return frame


async def test_an_anonymous_socket_is_told_to_sign_in_and_closed() -> None:
    socket = WebsocketCommunicator(application, "/ws/console/", headers=ORIGIN)
    connected, _ = await socket.connect()
    assert connected  # accepted only so the page can read why: a refused handshake hides its status
    ended = await socket.receive_json_from(timeout=5)
    assert (ended["type"], ended["detail"]) == ("session.ended", "Your session ended. Sign in again.")
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": 4401}
    await socket.disconnect(code=4401)


async def test_a_foreign_origin_is_refused_even_with_a_session() -> None:
    world = await sync_to_async(_world)()
    headers = [(k, v) for k, v in await sync_to_async(_headers)(world.teammate) if k != b"origin"]
    socket = WebsocketCommunicator(
        application, "/ws/console/", headers=[(b"origin", b"https://evil.example"), *headers]
    )
    connected, _ = await socket.connect()
    assert not connected


async def test_welcome_names_each_workspace_with_its_unclaimed_count() -> None:
    world = await sync_to_async(_world)()
    second = await sync_to_async(make_workspace)("Second")
    await sync_to_async(membership_add)(workspace=second, user=world.teammate, role=Membership.Role.AGENT)
    visitor, conversation = await sync_to_async(new_visitor)(world.chatbot)
    await sync_to_async(request)(visitor, conversation)

    socket, welcome = await _connect(world.teammate)
    assert welcome["workspaces"] == sorted(
        [{"id": world.workspace.pk, "unclaimed": 1}, {"id": second.pk, "unclaimed": 0}], key=lambda w: w["id"]
    )
    await socket.disconnect()


async def test_a_new_handoff_and_a_claim_reach_every_agent_of_the_workspace_with_the_count() -> None:
    world = await sync_to_async(_world)()
    owner, _ = await _connect(world.owner)
    teammate, _ = await _connect(world.teammate)
    visitor, conversation = await sync_to_async(new_visitor)(world.chatbot)
    await sync_to_async(request)(visitor, conversation)
    key = str(conversation.public_id)

    for socket in (owner, teammate):
        requested = await _until(socket, lambda f: f["type"] == "event")
        assert requested["kind"] == "handoff.requested"
        assert requested["workspace"] == world.workspace.pk
        queue = await _until(socket, lambda f: f["type"] == "queue")
        assert queue == {
            "type": "queue",
            "conversation": key,
            "status": "pending",
            "unclaimed": 1,
            "workspace": world.workspace.pk,
        }

    await sync_to_async(handoff_claim)(agent=world.owner, conversation_public_id=key)
    claimed = await _until(teammate, lambda f: f["type"] == "queue")
    assert (claimed["status"], claimed["unclaimed"]) == ("active", 0)
    await owner.disconnect()
    await teammate.disconnect()


async def test_watch_replays_what_was_missed_then_streams_live_events() -> None:
    world = await sync_to_async(_world)()
    visitor, conversation = await sync_to_async(new_visitor)(world.chatbot)
    await sync_to_async(say)(visitor, conversation, "first")
    await sync_to_async(request)(visitor, conversation)
    await sync_to_async(say)(visitor, conversation, "while waiting")
    key = str(conversation.public_id)

    socket, _ = await _connect(world.teammate)
    await socket.send_json_to({"type": "watch", "conversation": key, "last_seq": 1})
    watching = await socket.receive_json_from(timeout=5)
    assert watching == {"type": "watching", "conversation": key, "workspace": world.workspace.pk, "last_seq": 3}
    replayed = [await socket.receive_json_from(timeout=5) for _ in range(2)]
    assert [(f["seq"], f["kind"]) for f in replayed] == [(2, "handoff.requested"), (3, "message")]

    await sync_to_async(handoff_claim)(agent=world.teammate, conversation_public_id=key)
    await sync_to_async(handoff_reply)(
        agent=world.teammate, conversation_public_id=key, text="Hi, I'm here", client_id="r1"
    )
    # An agent reply is not a queue change: it reaches the console only through the watched group.
    reply = await _until(socket, lambda f: f["type"] == "event" and f["author"] == "agent")
    assert (reply["seq"], reply["text"], reply["workspace"]) == (5, "Hi, I'm here", world.workspace.pk)
    await socket.disconnect()


async def test_unwatch_stops_the_conversations_events() -> None:
    world = await sync_to_async(_world)()
    visitor, conversation = await sync_to_async(new_visitor)(world.chatbot)
    key = str(conversation.public_id)
    await sync_to_async(request)(visitor, conversation)
    await sync_to_async(handoff_claim)(agent=world.teammate, conversation_public_id=key)

    socket, _ = await _connect(world.teammate)
    await socket.send_json_to({"type": "watch", "conversation": key, "last_seq": 2})
    assert (await socket.receive_json_from(timeout=5))["type"] == "watching"
    await socket.send_json_to({"type": "unwatch"})
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from(timeout=5) == {"type": "pong"}  # the unwatch was handled
    await sync_to_async(handoff_reply)(agent=world.teammate, conversation_public_id=key, text="unseen", client_id="u1")
    # A visitor message in handoff also goes to the console group, after the reply in the same
    # channel: had the reply come through a still-watched group, it would arrive before it.
    await sync_to_async(say)(visitor, conversation, "seen through the console group")
    frame = await socket.receive_json_from(timeout=5)
    assert (frame["type"], frame["seq"], frame["author"]) == ("event", 4, "visitor")  # 3 was the reply
    await socket.disconnect()


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("not json", "invalid_json"),
        ('["watch"]', "invalid_frame"),
        ('{"type": "subscribe"}', "unknown_type"),
        ('{"type": "watch", "conversation": "nope"}', "invalid_input"),
        ('{"type": "watch", "conversation": "00000000-0000-0000-0000-000000000000"}', "not_found"),
        ('{"type": "ping", "pad": "' + "x" * 5000 + '"}', "frame_too_large"),
    ],
)
async def test_bad_frames_get_a_readable_error_and_the_socket_stays_open(frame: str, code: str) -> None:
    world = await sync_to_async(_world)()
    socket, _ = await _connect(world.teammate)
    await socket.send_to(text_data=frame)
    error = await socket.receive_json_from(timeout=5)
    assert (error["type"], error["code"]) == ("error", code)
    assert error["detail"]
    await socket.send_json_to({"type": "ping"})
    assert await socket.receive_json_from(timeout=5) == {"type": "pong"}
    await socket.disconnect()


async def _second_workspace(world: Personas) -> tuple[Any, Any]:
    """A second workspace the teammate is also in, with a handoff-enabled chatbot."""
    second = await sync_to_async(make_workspace)("Second")
    await sync_to_async(membership_add)(workspace=second, user=world.teammate, role=Membership.Role.AGENT)
    bot = await sync_to_async(make_chatbot)(second, "Second bot")
    await sync_to_async(enable_handoff)(bot)
    return second, bot


async def _new_handoff(bot: Any) -> Any:
    visitor, conversation = await sync_to_async(new_visitor)(bot)
    await sync_to_async(request)(visitor, conversation)
    return visitor, conversation


async def test_an_agent_removed_from_a_workspace_stops_hearing_it_at_once() -> None:
    world = await sync_to_async(_world)()
    second, second_bot = await _second_workspace(world)
    visitor, watched = await _new_handoff(world.chatbot)
    socket, welcome = await _connect(world.teammate)
    assert {w["id"] for w in welcome["workspaces"]} == {world.workspace.pk, second.pk}
    await socket.send_json_to({"type": "watch", "conversation": str(watched.public_id), "last_seq": 1})
    assert (await _until(socket, lambda f: f["type"] == "watching"))["workspace"] == world.workspace.pk

    def remove() -> None:  # as the admin does it: the row is deleted, no service involved
        Membership.objects.get(user=world.teammate, workspace=world.workspace).delete()

    await sync_to_async(remove)()
    revoked = await _until(socket, lambda f: f["type"] == "revoked")
    assert revoked == {"type": "revoked", "workspaces": [world.workspace.pk]}

    # Neither Acme's queue nor the watched Acme conversation reaches the socket any more; Second's does.
    await _new_handoff(world.chatbot)
    await sync_to_async(say)(visitor, watched, "said after the agent was removed")
    _, in_second = await _new_handoff(second_bot)
    frame = await _until(socket, lambda f: f["type"] in ("event", "queue"))
    assert (frame["workspace"], frame["conversation"]) == (second.pk, str(in_second.public_id))
    await socket.send_json_to({"type": "watch", "conversation": str(watched.public_id), "last_seq": 0})
    refused = await _until(socket, lambda f: f["type"] in ("error", "watching"))
    assert (refused["type"], refused["code"]) == ("error", "not_found")
    await socket.disconnect()


async def test_a_membership_moved_to_another_workspace_drops_the_old_one() -> None:
    world = await sync_to_async(_world)()
    second, second_bot = await _second_workspace(world)
    elsewhere = await sync_to_async(make_workspace)("Elsewhere")
    socket, _ = await _connect(world.teammate)

    def move() -> None:
        membership = Membership.objects.get(user=world.teammate, workspace=world.workspace)
        membership.workspace = elsewhere
        membership.save()

    await sync_to_async(move)()
    revoked = await _until(socket, lambda f: f["type"] == "revoked")
    assert revoked["workspaces"] == [world.workspace.pk]
    await _new_handoff(world.chatbot)
    _, in_second = await _new_handoff(second_bot)
    frame = await _until(socket, lambda f: f["type"] in ("event", "queue"))
    assert (frame["workspace"], frame["conversation"]) == (second.pk, str(in_second.public_id))
    await socket.disconnect()


async def test_the_socket_closes_when_the_agents_last_workspace_is_gone() -> None:
    world = await sync_to_async(_world)()
    socket, _ = await _connect(world.outsider)
    await sync_to_async(Membership.objects.filter(user=world.outsider).delete)()
    assert await _until(socket, lambda f: f["type"] == "revoked") == {
        "type": "revoked",
        "workspaces": [world.other_workspace.pk],
    }
    closed = await socket.receive_output(timeout=5)
    assert closed == {"type": "websocket.close", "code": 4403}
    await socket.disconnect(code=4403)  # the client's side of the close, so the consumer finishes
