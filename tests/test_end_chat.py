"""The visitor's "End chat" in a conversation with the AI: closed like a resolved one, so it can be
rated, and Analytics counts the rating under "AI only"."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from conversations.models import Conversation, Event
from conversations.services import conversation_start, visitor_create
from handoff.state import conversation_state
from pivra.console.satisfaction import satisfaction_stats
from pivra.errors import DomainError
from pivra.widget.survey import widget_end_chat, widget_rate
from pivra.widget.tokens import visitor_token
from tests.factories import Personas
from tests.handoff_helpers import say
from tests.test_actions_support import escalate

pytestmark = pytest.mark.django_db


def _ai_chat(personas: Personas) -> Conversation:
    visitor = visitor_create(chatbot=personas.chatbot, locale="en", page="https://shop.example.com/")
    conversation = conversation_start(visitor=visitor)
    say(visitor, conversation, "Do you ship to Norway?")
    return conversation


def _code(call: Any) -> str:
    with pytest.raises(DomainError) as refused:
        call()
    return refused.value.code


def test_the_visitor_ends_an_ai_chat_rates_it_and_analytics_counts_it_as_ai_only(personas: Personas) -> None:
    conversation = _ai_chat(personas)
    visitor, key = conversation.visitor, str(conversation.public_id)
    reply = widget_end_chat(visitor=visitor, client_id="end-1", conversation=key)
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.CLOSED and conversation.closed_at is not None
    event = Event.objects.get(conversation=conversation, seq=reply["seq"])
    assert (event.kind, event.author, event.text) == ("conversation.ended", "system", "The visitor ended the chat")
    assert reply["state"]["status"] == "closed" and reply["state"]["survey"] == {"scale": "thumbs", "score": None}
    again = widget_end_chat(visitor=visitor, client_id="end-1", conversation=key)  # a resend: the same answer
    assert again["seq"] == reply["seq"]
    assert _code(lambda: widget_end_chat(visitor=visitor, client_id="end-2", conversation=key)) == "not_open"

    widget_rate(visitor=visitor, client_id="r-1", score=5, conversation=key)
    now = timezone.now()
    stats = satisfaction_stats(workspace_id=personas.workspace.pk, start=now - timedelta(days=1), end=now)
    assert (stats.ai_only.rated, stats.person.rated) == (1, 0)
    conversation.refresh_from_db()
    assert conversation_state(conversation)["survey"] == {"scale": "thumbs", "score": 5}


def test_a_chat_with_the_team_or_an_empty_one_cannot_be_ended_by_the_visitor(personas: Personas) -> None:
    handed = escalate(personas.chatbot).conversation
    code = _code(lambda: widget_end_chat(visitor=handed.visitor, client_id=None, conversation=str(handed.public_id)))
    assert code == "handoff_open"
    visitor = visitor_create(chatbot=personas.chatbot)
    empty = conversation_start(visitor=visitor)
    assert _code(lambda: widget_end_chat(visitor=visitor, client_id=None, conversation=str(empty.public_id))) == (
        "nothing_to_end"
    )
    assert Conversation.objects.get(pk=empty.pk).status != Conversation.Status.CLOSED


def test_the_http_twin(personas: Personas) -> None:
    conversation = _ai_chat(personas)
    auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {visitor_token(conversation.visitor)}"}
    response = Client().post("/api/widget/end", {"client_id": "e-1"}, content_type="application/json", **auth)
    assert response.status_code == 200, response.content
    assert response.json()["state"]["status"] == "closed"
    refused = Client().post("/api/widget/end", {"client_id": "e-2"}, content_type="application/json", **auth)
    assert (refused.status_code, refused.json()["code"]) == (409, "not_open")
