"""The agent side: first claim wins, only the assignee replies, resolve closes the thread whole."""

from __future__ import annotations

import pytest

from handoff.state import visitor_current_conversation
from handoff.transitions.claim import handoff_claim
from handoff.transitions.continue_ai import conversation_start_new
from handoff.transitions.reply import handoff_reply
from handoff.transitions.resolve import handoff_resolve
from pivra.errors import Conflict, DomainError, Forbidden, NotFound
from tests.handoff_helpers import event_kinds, new_visitor, outbox_events, request, say

pytestmark = pytest.mark.django_db


def test_the_first_claim_wins_and_the_second_is_told_who_holds_it(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    handoff = handoff_claim(agent=personas.owner, conversation_public_id=str(conversation.public_id))
    assert handoff.status == "active" and handoff.claimed_by == personas.owner
    with pytest.raises(Conflict) as error:
        handoff_claim(agent=personas.teammate, conversation_public_id=str(conversation.public_id))
    assert error.value.code == "already_claimed"
    assert error.value.detail == "Already claimed by owner."
    assert error.value.status == 409
    # Claiming again by the holder is harmless.
    assert handoff_claim(agent=personas.owner, conversation_public_id=str(conversation.public_id)).pk == handoff.pk
    assert len(outbox_events("handoff.claimed")) == 1


def test_an_outsider_cannot_see_or_claim(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    with pytest.raises(NotFound):
        handoff_claim(agent=personas.outsider, conversation_public_id=str(conversation.public_id))
    with pytest.raises(NotFound):
        handoff_claim(agent=personas.owner, conversation_public_id="not-a-uuid")


def test_only_the_assignee_replies(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    conv_id = str(conversation.public_id)
    with pytest.raises(Conflict, match="Claim this conversation"):
        handoff_reply(agent=personas.owner, conversation_public_id=conv_id, text="Hi", client_id="a1")
    handoff_claim(agent=personas.owner, conversation_public_id=conv_id)
    with pytest.raises(Forbidden) as error:
        handoff_reply(agent=personas.teammate, conversation_public_id=conv_id, text="Me too", client_id="b1")
    assert error.value.code == "not_assignee"
    received = handoff_reply(agent=personas.owner, conversation_public_id=conv_id, text="Hi, I'm here", client_id="a1")
    again = handoff_reply(agent=personas.owner, conversation_public_id=conv_id, text="Hi, I'm here", client_id="a1")
    assert received.event.author == "agent" and received.event.agent_name == "Support agent"  # no first name
    assert again.duplicate and again.event.seq == received.event.seq


def test_resolve_closes_the_conversation_with_its_thread_whole(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    say(visitor, conversation, "I need help with my order")
    request(visitor, conversation)
    conv_id = str(conversation.public_id)
    handoff_claim(agent=personas.owner, conversation_public_id=conv_id)
    handoff_reply(agent=personas.owner, conversation_public_id=conv_id, text="Sure, what's the number?", client_id="x")
    say(visitor, conversation, "It's 1234")
    with pytest.raises(Forbidden):
        handoff_resolve(agent=personas.teammate, conversation_public_id=conv_id)
    handoff = handoff_resolve(agent=personas.owner, conversation_public_id=conv_id)
    conversation.refresh_from_db()
    assert handoff.status == "resolved" and conversation.status == "closed" and conversation.closed_at
    assert event_kinds(conversation) == [
        "message",
        "handoff.requested",
        "handoff.claimed",
        "message",
        "message",
        "handoff.resolved",
    ]
    assert conversation.events.last().text == "Conversation resolved ✓"  # type: ignore[union-attr]
    with pytest.raises(DomainError, match="resolved"):
        say(visitor, conversation, "one more thing")
    with pytest.raises(Conflict):
        handoff_resolve(agent=personas.owner, conversation_public_id=conv_id)
    fresh = conversation_start_new(visitor=visitor)
    assert fresh.status == "open"
    assert visitor_current_conversation(visitor=visitor).pk == fresh.pk
    assert len(outbox_events("handoff.resolved")) == 1


def test_an_agents_resolve_records_no_reason(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    handoff_resolve(agent=personas.owner, conversation_public_id=str(conversation.public_id))
    (resolved,) = outbox_events("handoff.resolved")
    assert "reason" not in resolved.payload["data"]
    assert resolved.payload["data"]["handoff"]["status"] == "resolved"
    assert conversation.events.order_by("seq").last().data == {}  # type: ignore[union-attr]
