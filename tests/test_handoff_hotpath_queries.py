"""The hot paths of a live chat — a visitor's message and an agent's reply — in three statements each;
the idle clock (``Handoff.last_message_at``) rides on statements they run anyway and is written at
most once a minute (handoff/transitions/idle.py), so most messages leave the handoff row alone.

Measured when this was written: a visitor's message took 4 statements (a handoff UPDATE of its own
on every message, even while pending), now 3; an agent's reply 3, still 3; both rewrote the handoff
row (an indexed column) on every message, now at most once a minute."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from handoff.transitions.reply import handoff_reply
from tests.handoff_helpers import new_visitor, request, say

pytestmark = pytest.mark.django_db


def _statements(captured: CaptureQueriesContext) -> list[str]:
    """The statements sent, without the test transaction's savepoints (production has none)."""
    return [q["sql"] for q in captured.captured_queries if "SAVEPOINT" not in q["sql"]]


def _live(bot, agent):
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    handoff = handoff_claim(agent=agent, conversation_public_id=str(conversation.public_id))
    return visitor, conversation, handoff


def _clock(handoff: Handoff):
    return Handoff.objects.values_list("last_message_at", flat=True).get(pk=handoff.pk)


def _age_clock(handoff: Handoff, seconds: int) -> None:
    at = _clock(handoff)
    assert at is not None
    Handoff.objects.filter(pk=handoff.pk).update(last_message_at=at - timedelta(seconds=seconds))


def test_a_visitor_message_is_three_statements_and_moves_the_clock_once_a_minute(bot, personas) -> None:
    visitor, conversation, handoff = _live(bot, personas.owner)
    with CaptureQueriesContext(connection) as captured:
        say(visitor, conversation, "Hello?")
    assert len(_statements(captured)) == 3  # lock, resend check, append (+ idle clock)
    first = _clock(handoff)
    assert first is not None  # the first message after the claim starts the clock
    say(visitor, conversation, "Are you there?")
    assert _clock(handoff) == first  # within the minute: the row is not written
    _age_clock(handoff, 61)
    say(visitor, conversation, "Hello again")
    assert _clock(handoff) is not None and _clock(handoff) > first  # older than a minute: it moves


def test_a_visitor_message_while_pending_is_three_statements_too(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    with CaptureQueriesContext(connection) as captured:
        say(visitor, conversation, "Anyone?")
    assert len(_statements(captured)) == 3
    assert _clock(handoff) is None


def test_an_agent_reply_is_three_statements_and_moves_the_clock_once_a_minute(bot, personas) -> None:
    _visitor, conversation, handoff = _live(bot, personas.owner)
    public_id = str(conversation.public_id)
    with CaptureQueriesContext(connection) as captured:
        handoff_reply(agent=personas.owner, conversation_public_id=public_id, text="Hi", client_id="r1")
    assert len(_statements(captured)) == 3  # lock, state (+ idle clock), append
    first = _clock(handoff)
    assert first is not None
    handoff_reply(agent=personas.owner, conversation_public_id=public_id, text="More", client_id="r2")
    assert _clock(handoff) == first
    _age_clock(handoff, 61)
    handoff_reply(agent=personas.owner, conversation_public_id=public_id, text="Still", client_id="r3")
    assert _clock(handoff) is not None and _clock(handoff) > first
