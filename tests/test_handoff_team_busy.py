"""Team busy: the lead's mobile number, "Continue with AI", and a late claim bringing the agent back."""

from __future__ import annotations

from typing import Any

import pytest

from conversations.models import Conversation
from handoff.state import conversation_state, visitor_current_conversation
from handoff.transitions.claim import handoff_claim
from handoff.transitions.continue_ai import handoff_continue_with_ai
from handoff.transitions.lead import lead_capture
from handoff.transitions.timers import handoff_expire
from pivra.errors import Conflict, DomainError
from tests.handoff_helpers import event_kinds, new_visitor, outbox_events, request

pytestmark = pytest.mark.django_db


def test_team_busy_lead_capture_and_continue_then_a_late_claim_brings_the_agent_back(bot, personas) -> None:
    visitor, conversation = new_visitor(bot, locale="fr-FR")
    handoff = request(visitor, conversation)
    handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)

    with pytest.raises(DomainError) as error:
        lead_capture(visitor=visitor, conversation_public_id=str(conversation.public_id), phone="12")
    assert error.value.code == "invalid_phone"
    lead_capture(visitor=visitor, conversation_public_id=str(conversation.public_id), phone="06 12 34 56 78")
    conversation.refresh_from_db()
    assert conversation.lead["phone"] == "+33612345678"
    (captured,) = outbox_events("lead.captured")
    assert captured.payload["data"]["visitor"]["phone"] == "+33612345678"

    fresh = handoff_continue_with_ai(visitor=visitor, conversation_public_id=str(conversation.public_id))
    assert fresh.status == "open" and fresh.pk != conversation.pk
    assert visitor_current_conversation(visitor=visitor).pk == fresh.pk
    handoff.refresh_from_db()
    assert handoff.status == "busy"  # still claimable

    handoff_claim(agent=personas.teammate, conversation_public_id=str(conversation.public_id))
    current = visitor_current_conversation(visitor=visitor)
    assert current.pk == conversation.pk
    state = conversation_state(current)
    assert state["handoff"]["status"] == "active" and state["handoff"]["agent"] == "Support agent"
    late = outbox_events("handoff.claimed")[0]
    assert late.payload["data"]["late"] is True


def test_continue_with_ai_is_only_offered_while_busy(bot) -> None:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    with pytest.raises(Conflict):
        handoff_continue_with_ai(visitor=visitor, conversation_public_id=str(conversation.public_id))


def test_a_refused_landline_is_not_saved_as_the_lead(bot) -> None:
    visitor, conversation = new_visitor(bot, locale="fr-FR")
    handoff = request(visitor, conversation)
    handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)
    with pytest.raises(DomainError, match="landline"):
        lead_capture(visitor=visitor, conversation_public_id=str(conversation.public_id), phone="01 42 68 53 00")
    conversation.refresh_from_db()
    assert "phone" not in conversation.lead
    assert not outbox_events("lead.captured")


def _frames_sent(monkeypatch) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    def record(groups: Any, frame: dict[str, Any]) -> bool:
        sent.append(frame)
        return True

    monkeypatch.setattr("pivra.realtime.send_now_rollback_unsafe", record)
    return sent


def test_continue_with_ai_after_a_claim_keeps_the_visitor_with_the_agent(
    bot, personas, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)
    handoff_claim(agent=personas.owner, conversation_public_id=str(conversation.public_id))
    sent = _frames_sent(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        result = handoff_continue_with_ai(
            visitor=visitor, conversation_public_id=str(conversation.public_id), client_id="cont-1"
        )
    assert result.pk == conversation.pk
    assert conversation_state(result)["handoff"]["status"] == "active"
    assert not [f for f in sent if f.get("type") == "switch"]
    assert "conversation.continued" not in event_kinds(conversation)
    assert Conversation.objects.filter(visitor=visitor).count() == 1


def test_continue_with_ai_while_busy_switches_to_a_fresh_conversation(
    bot, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)
    sent = _frames_sent(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        fresh = handoff_continue_with_ai(
            visitor=visitor, conversation_public_id=str(conversation.public_id), client_id="cont-1"
        )
    (switch,) = [f for f in sent if f.get("type") == "switch"]
    assert switch["state"]["conversation"] == str(fresh.public_id)
    again = handoff_continue_with_ai(
        visitor=visitor, conversation_public_id=str(conversation.public_id), client_id="cont-1"
    )
    assert again.pk == fresh.pk
    assert event_kinds(conversation).count("conversation.continued") == 1
