"""An agent of another workspace sees nothing of Acme's conversations: every page, export, console
API call and socket watch answers "not found", and lists and exports leave Acme's data out."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.test import Client

from conversations.models import Conversation
from handoff.transitions.claim import handoff_claim
from pivra.asgi import application
from tests.factories import Personas, make_personas
from tests.handoff_helpers import enable_handoff, new_visitor, request, say

ORIGIN = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]
SECRET = "acme-only secret text"


@dataclass
class World:
    personas: Personas
    conversation: Conversation
    other_conversation: Conversation


def _world() -> World:
    personas = make_personas()
    enable_handoff(personas.chatbot)
    enable_handoff(personas.other_chatbot)
    visitor, conversation = new_visitor(personas.chatbot)
    say(visitor, conversation, SECRET)
    request(visitor, conversation)
    other_visitor, other_conversation = new_visitor(personas.other_chatbot)
    say(other_visitor, other_conversation, "the outsider's own visitor")
    request(other_visitor, other_conversation)
    return World(personas, conversation, other_conversation)


@pytest.fixture
def world(db: None) -> World:
    return _world()


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


@pytest.mark.parametrize(
    "path",
    [
        "/dashboard/conversations/{id}/",
        "/dashboard/conversations/{id}/state",
        "/dashboard/conversations/{id}/export.csv",
        "/dashboard/conversations/{id}/export.json",
    ],
)
def test_an_outsider_gets_404_on_every_page_of_another_workspaces_conversation(world: World, path: str) -> None:
    url = path.format(id=world.conversation.public_id)
    assert _client(world.personas.outsider).get(url).status_code == 404
    assert _client(world.personas.teammate).get(url).status_code == 200


def test_a_malformed_or_unknown_conversation_id_is_a_404_too(world: World) -> None:
    client = _client(world.personas.teammate)
    assert client.get("/dashboard/conversations/not-a-uuid/").status_code == 404
    assert client.get("/dashboard/conversations/00000000-0000-0000-0000-000000000000/").status_code == 404


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("get", "/api/console/conversations/{id}"),
        ("post", "/api/console/handoffs/{id}/claim"),
        ("post", "/api/console/handoffs/{id}/reply"),
        ("post", "/api/console/handoffs/{id}/resolve"),
    ],
)
def test_an_outsider_gets_404_from_the_console_api(world: World, method: str, path: str) -> None:
    client = _client(world.personas.outsider)
    url = path.format(id=world.conversation.public_id)
    body = json.dumps({"client_id": "c1", "text": "hello"})
    response = client.get(url) if method == "get" else client.post(url, body, content_type="application/json")
    assert response.status_code == 404, response.content
    assert response.json()["code"] in ("conversation_not_found", "handoff_not_found")
    world.conversation.handoff.refresh_from_db()
    assert world.conversation.handoff.status == "pending"


def test_the_console_api_list_leaves_other_workspaces_out(world: World) -> None:
    listed = _client(world.personas.outsider).get("/api/console/handoffs?status=all").json()
    assert [h["conversation"] for h in listed] == [str(world.other_conversation.public_id)]


def test_lists_and_exports_of_a_set_leave_other_workspaces_out(world: World) -> None:
    client = _client(world.personas.outsider)
    for tab in ("handoff", "open"):
        page = client.get("/dashboard/conversations/", {"tab": tab, "q": "secret"})
        assert page.status_code == 200
        assert SECRET.encode() not in page.content
        assert str(world.conversation.public_id).encode() not in page.content
    handoff_tab = client.get("/dashboard/conversations/", {"tab": "handoff"}).content.decode()
    assert str(world.other_conversation.public_id) in handoff_tab
    for fmt in ("csv", "json"):
        for tab in ("handoff", "open"):
            response = client.get(f"/dashboard/conversations/export.{fmt}", {"tab": tab})
            body = _streamed(response)
            assert SECRET not in body
            assert str(world.conversation.public_id) not in body
    own = client.get("/dashboard/conversations/export.json", {"tab": "handoff"})
    exported = json.loads(_streamed(own))
    assert [c["conversation"] for c in exported["conversations"]] == [str(world.other_conversation.public_id)]


def _streamed(response: Any) -> str:
    return b"".join(response.streaming_content).decode("utf-8-sig")


def test_a_chatbot_filter_naming_another_workspaces_bot_is_ignored_not_obeyed(world: World) -> None:
    client = _client(world.personas.outsider)
    page = client.get("/dashboard/conversations/", {"tab": "handoff", "chatbot": str(world.personas.chatbot.pk)})
    assert SECRET.encode() not in page.content
    assert str(world.other_conversation.public_id).encode() in page.content


def test_analytics_count_only_the_users_workspace(world: World) -> None:
    page = _client(world.personas.outsider).get("/dashboard/analytics/", {"days": 7})
    assert page.status_code == 200
    assert page.context["stats"].total == 1
    handoff_claim(agent=world.personas.teammate, conversation_public_id=str(world.conversation.public_id))
    page = _client(world.personas.outsider).get("/dashboard/analytics/", {"days": 7})
    assert page.context["stats"].claimed == 0


def test_pages_require_login() -> None:
    for path in ("/dashboard/conversations/", "/dashboard/analytics/", "/dashboard/conversations/export.csv"):
        response = Client().get(path)
        assert response.status_code == 302
        assert response["Location"].startswith("/accounts/login/")


# --- the console socket -----------------------------------------------------------------------


def _session_headers(user) -> list[tuple[bytes, bytes]]:
    client = Client()
    client.force_login(user)
    return [*ORIGIN, (b"cookie", f"sessionid={client.cookies['sessionid'].value}".encode())]


@pytest.mark.django_db(transaction=True)
async def test_an_outsider_cannot_watch_another_workspaces_conversation_over_the_socket() -> None:
    world = await sync_to_async(_world)()
    socket = WebsocketCommunicator(
        application, "/ws/console/", headers=await sync_to_async(_session_headers)(world.personas.outsider)
    )
    connected, _ = await socket.connect()
    assert connected
    welcome = await socket.receive_json_from(timeout=5)
    assert welcome["type"] == "welcome"
    assert [w["id"] for w in welcome["workspaces"]] == [world.personas.other_workspace.pk]

    await socket.send_json_to({"type": "watch", "conversation": str(world.conversation.public_id), "last_seq": 0})
    refused = await socket.receive_json_from(timeout=5)
    assert refused["type"] == "error"
    assert refused["code"] == "not_found"
    # Acme's later changes do not reach this socket: claim Acme's handoff, then one of the outsider's
    # own; every frame up to the outsider's queue change must be about the outsider's conversation.
    await sync_to_async(handoff_claim)(
        agent=world.personas.teammate, conversation_public_id=str(world.conversation.public_id)
    )
    await sync_to_async(handoff_claim)(
        agent=world.personas.outsider, conversation_public_id=str(world.other_conversation.public_id)
    )
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1]["type"] != "queue":
        seen.append(await socket.receive_json_from(timeout=5))
    assert {frame["conversation"] for frame in seen} == {str(world.other_conversation.public_id)}

    await socket.send_json_to({"type": "watch", "conversation": str(world.other_conversation.public_id), "last_seq": 0})
    watching = await socket.receive_json_from(timeout=5)
    assert watching["type"] == "watching"
    replayed = [await socket.receive_json_from(timeout=5) for _ in range(watching["last_seq"])]
    assert all(frame["conversation"] == str(world.other_conversation.public_id) for frame in replayed)
    assert SECRET not in json.dumps(replayed)
    await socket.disconnect()
