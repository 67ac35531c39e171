"""GET /api/console/conversations/{id}/events: what a console view fetches to fill a hole in its seqs."""

from __future__ import annotations

import pytest
from django.test import Client

from conversations.models import Conversation, Event
from handoff import api as console_api
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request, say

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _conversation(personas: Personas) -> Conversation:
    visitor, conversation = new_visitor(enable_handoff(personas.chatbot))
    for text in ("one", "two", "three"):
        say(visitor, conversation, text)
    request(visitor, conversation)
    conversation.refresh_from_db()
    return conversation


def _events(client: Client, conversation: Conversation, after_seq: object) -> tuple[int, dict]:
    response = client.get(f"/api/console/conversations/{conversation.public_id}/events", {"after_seq": str(after_seq)})
    return response.status_code, response.json()


def test_it_returns_the_events_after_the_seq_in_order_with_the_last_seq(personas: Personas) -> None:
    conversation = _conversation(personas)
    status, body = _events(_client(personas.teammate), conversation, 1)
    assert status == 200
    assert body["conversation"] == str(conversation.public_id)
    assert body["last_seq"] == conversation.last_seq
    assert body["has_more"] is False
    seqs = [e["seq"] for e in body["events"]]
    assert seqs == list(range(2, conversation.last_seq + 1))
    first = body["events"][0]
    assert set(first) == {
        "type",
        "conversation",
        "seq",
        "kind",
        "author",
        "text",
        "agent",
        "client_id",
        "data",
        "created_at",
    }
    assert (first["type"], first["conversation"]) == ("event", str(conversation.public_id))


def test_a_long_gap_comes_in_pages(personas: Personas, monkeypatch: pytest.MonkeyPatch) -> None:
    conversation = _conversation(personas)
    monkeypatch.setattr(console_api, "EVENTS_PAGE", 2)
    status, body = _events(_client(personas.owner), conversation, 0)
    assert status == 200
    assert [e["seq"] for e in body["events"]] == [1, 2]
    assert body["last_seq"] == conversation.last_seq > 2
    assert body["has_more"] is True  # the client asks on from seq 2
    status, body = _events(_client(personas.owner), conversation, conversation.last_seq - 2)
    assert [e["seq"] for e in body["events"]] == [conversation.last_seq - 1, conversation.last_seq]
    assert body["has_more"] is False  # exactly a page left: nothing more


def test_an_answer_short_of_last_seq_is_complete_when_the_last_event_was_deleted(personas: Personas) -> None:
    """Staff can delete events in the admin: seqs then miss, and only has_more tells a cut page."""
    conversation = _conversation(personas)
    Event.objects.filter(conversation=conversation, seq=conversation.last_seq).delete()
    status, body = _events(_client(personas.owner), conversation, conversation.last_seq - 1)
    assert status == 200
    assert (body["events"], body["last_seq"], body["has_more"]) == ([], conversation.last_seq, False)


def test_another_workspace_gets_not_found_and_bad_seqs_are_refused(personas: Personas) -> None:
    conversation = _conversation(personas)
    status, body = _events(_client(personas.outsider), conversation, 0)
    assert (status, body["code"]) == (404, "conversation_not_found")
    for bad in (-1, "x", 10**20):
        status, body = _events(_client(personas.owner), conversation, bad)
        assert status == 422 and body["code"] == "invalid_input", bad
    response = Client().get(f"/api/console/conversations/{conversation.public_id}/events")
    assert response.status_code == 401


def test_the_openapi_schema_documents_it() -> None:
    operation = Client().get("/api/openapi.json").json()["paths"]["/api/console/conversations/{conversation_id}/events"]
    assert {p["name"] for p in operation["get"]["parameters"]} == {"conversation_id", "after_seq"}
    assert {"200", "401", "404", "422"} <= set(operation["get"]["responses"])
