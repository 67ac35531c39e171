"""'Continue with AI' answers with the conversation the widget must show once the switch committed."""

from __future__ import annotations

from typing import Any

import pytest

from conversations.agent_names import agent_public_name
from conversations.models import Conversation
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from handoff.transitions.continue_ai import handoff_continue_with_ai
from handoff.transitions.timers import handoff_expire
from pivra.widget import operations
from tests.factories import Personas, make_personas
from tests.handoff_helpers import enable_handoff, new_visitor, request

pytestmark = pytest.mark.django_db


@pytest.fixture
def world() -> Personas:
    personas = make_personas()
    enable_handoff(personas.chatbot)
    return personas


def _busy(world: Personas) -> tuple[Any, Conversation, Handoff]:
    visitor, conversation = new_visitor(world.chatbot)
    handoff = request(visitor, conversation)
    assert handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)
    return visitor, conversation, handoff


def test_a_claim_landing_right_after_the_switch_gets_the_live_conversation_back(
    world: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    visitor, busy, _ = _busy(world)

    def continue_then_claimed(**kwargs: Any) -> Conversation:
        fresh = handoff_continue_with_ai(**kwargs)
        # The agent claims the busy handoff after the continue committed, before the reply is built.
        handoff_claim(agent=world.teammate, conversation_public_id=str(busy.public_id))
        return fresh

    monkeypatch.setattr(operations, "handoff_continue_with_ai", continue_then_claimed)
    reply = operations.widget_continue(visitor=visitor, client_id="c-1")

    assert reply["state"]["conversation"] == str(busy.public_id), "the reply would switch away from the agent"
    assert reply["state"]["handoff"]["status"] == "active"
    assert reply["state"]["handoff"]["agent"] == agent_public_name(world.teammate)
    assert Conversation.objects.filter(visitor=visitor).count() == 2  # the fresh one was still started


def test_a_resend_after_a_late_claim_stays_with_the_agent_and_starts_nothing(world: Personas) -> None:
    visitor, busy, _ = _busy(world)
    first = operations.widget_continue(visitor=visitor, client_id="c-1")
    fresh = first["state"]["conversation"]
    assert fresh != str(busy.public_id)
    assert first["state"]["status"] == "open"

    handoff_claim(agent=world.teammate, conversation_public_id=str(busy.public_id))
    again = operations.widget_continue(visitor=visitor, client_id="c-1")  # the first reply was lost

    assert again["state"]["conversation"] == str(busy.public_id)
    assert again["state"]["handoff"]["status"] == "active"
    assert Conversation.objects.filter(visitor=visitor).count() == 2


def test_a_resend_gets_the_conversation_the_first_one_started(world: Personas) -> None:
    visitor, busy, handoff = _busy(world)
    first = operations.widget_continue(visitor=visitor, client_id="c-1")
    again = operations.widget_continue(visitor=visitor, client_id="c-1")

    assert again == first
    assert first["state"]["conversation"] != str(busy.public_id)
    assert Conversation.objects.filter(visitor=visitor).count() == 2
    assert Handoff.objects.get(pk=handoff.pk).status == Handoff.Status.BUSY  # still claimable
