"""A mobile number is taken while the team may still follow up, never on a resolved conversation."""

from __future__ import annotations

import pytest
from django.test import Client

from actions.models import OutboxEvent
from conversations.models import Conversation
from handoff.transitions.claim import handoff_claim
from handoff.transitions.lead import lead_capture
from handoff.transitions.resolve import handoff_resolve
from pivra.errors import Conflict
from pivra.widget.tokens import visitor_token
from tests.factories import Personas
from tests.test_actions_support import escalate

pytestmark = pytest.mark.django_db


def _resolved(personas: Personas) -> Conversation:
    conversation = escalate(personas.chatbot).conversation
    key = str(conversation.public_id)
    handoff_claim(agent=personas.owner, conversation_public_id=key)
    handoff_resolve(agent=personas.owner, conversation_public_id=key)
    conversation.refresh_from_db()
    assert conversation.status == Conversation.Status.CLOSED
    return conversation


def test_lead_capture_is_refused_once_the_conversation_is_resolved(personas: Personas) -> None:
    conversation = _resolved(personas)
    with pytest.raises(Conflict) as refused:
        lead_capture(
            visitor=conversation.visitor, conversation_public_id=str(conversation.public_id), phone="+447911123456"
        )
    assert refused.value.code == "conversation_resolved"
    conversation.refresh_from_db()
    assert "phone" not in conversation.lead
    assert not OutboxEvent.objects.filter(type="lead.captured").exists()


def test_the_widget_gets_a_readable_409(personas: Personas) -> None:
    conversation = _resolved(personas)
    http = Client(HTTP_AUTHORIZATION=f"Bearer {visitor_token(conversation.visitor)}")
    response = http.post(
        "/api/widget/lead", {"client_id": "l1", "phone": "+447911123456"}, content_type="application/json"
    )
    assert response.status_code == 409, response.content
    body = response.json()
    assert body["code"] == "conversation_resolved"
    assert "resolved" in body["detail"] and "Start a new conversation" in body["detail"]


def test_a_number_saved_before_the_resolution_can_be_resent_harmlessly(personas: Personas) -> None:
    conversation = escalate(personas.chatbot).conversation
    key = str(conversation.public_id)
    lead_capture(visitor=conversation.visitor, conversation_public_id=key, phone="+447911123456")
    handoff_claim(agent=personas.owner, conversation_public_id=key)
    handoff_resolve(agent=personas.owner, conversation_public_id=key)
    again = lead_capture(visitor=conversation.visitor, conversation_public_id=key, phone="+447911123456")
    assert again.lead["phone"] == "+447911123456"
    assert OutboxEvent.objects.filter(type="lead.captured").count() == 1
