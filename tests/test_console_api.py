"""The console API over HTTP: its OpenAPI docs, the list's query count, and the refusals as JSON."""

from __future__ import annotations

import json

import pytest
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from conversations.models import Conversation
from handoff.transitions.claim import handoff_claim
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request, say

pytestmark = pytest.mark.django_db


@pytest.fixture
def bot(personas: Personas):
    return enable_handoff(personas.chatbot)


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _waiting(bot, text: str = "Where is my order?") -> Conversation:
    visitor, conversation = new_visitor(bot)
    say(visitor, conversation, text)
    request(visitor, conversation)
    return conversation


def test_the_openapi_docs_describe_the_console_operations() -> None:
    response = Client().get("/api/openapi.json")
    assert response.status_code == 200
    paths = response.json()["paths"]
    assert "get" in paths["/api/console/handoffs"]
    for action in ("claim", "reply", "resolve"):
        operation = paths[f"/api/console/handoffs/{{conversation_id}}/{action}"]["post"]
        assert "409" in operation["responses"], action
    assert "get" in paths["/api/console/conversations/{conversation_id}"]


def test_the_handoff_list_costs_the_same_queries_for_one_row_or_many(bot, personas) -> None:
    client = _client(personas.owner)
    _waiting(bot, "first")
    client.get("/api/console/handoffs")  # warm the session cache, so both counts see the same
    with CaptureQueriesContext(connection) as one:
        assert len(client.get("/api/console/handoffs").json()) == 1
    for n in range(5):
        _waiting(bot, f"message {n}")
    with CaptureQueriesContext(connection) as six:
        rows = client.get("/api/console/handoffs").json()
    assert len(rows) == 6
    assert len(six.captured_queries) == len(one.captured_queries)
    assert [row["last_message"] for row in rows] == ["first"] + [f"message {n}" for n in range(5)]


def test_the_last_message_is_the_newest_message_not_a_system_event(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    say(visitor, conversation, "older")
    request(visitor, conversation)
    say(visitor, conversation, "newest")
    handoff_claim(agent=personas.owner, conversation_public_id=str(conversation.public_id))  # a system event
    (row,) = _client(personas.owner).get("/api/console/handoffs").json()
    assert row["last_message"] == "newest" and row["status"] == "active" and row["claimed_by"] == "owner"


def test_it_rejects_a_second_claim_with_409_naming_the_holder(bot, personas) -> None:
    conversation = _waiting(bot)
    url = f"/api/console/handoffs/{conversation.public_id}/claim"
    first = _client(personas.owner).post(url)
    assert first.status_code == 200 and first.json()["claimed_by"] == "owner"
    second = _client(personas.teammate).post(url)
    assert second.status_code == 409
    assert second.json() == {"code": "already_claimed", "detail": "Already claimed by owner."}


def test_it_rejects_a_reply_from_an_agent_who_did_not_claim(bot, personas) -> None:
    conversation = _waiting(bot)
    _client(personas.owner).post(f"/api/console/handoffs/{conversation.public_id}/claim")
    url = f"/api/console/handoffs/{conversation.public_id}/reply"
    body = json.dumps({"client_id": "t-1", "text": "Me too"})
    refused = _client(personas.teammate).post(url, body, content_type="application/json")
    assert refused.status_code == 403
    assert refused.json()["code"] == "not_assignee"
    assert not conversation.events.filter(author="agent").exists()
    body = json.dumps({"client_id": "o-1", "text": "Hi, I'm here"})
    accepted = _client(personas.owner).post(url, body, content_type="application/json")
    assert accepted.status_code == 201 and accepted.json()["duplicate"] is False
