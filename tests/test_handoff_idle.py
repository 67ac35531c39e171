"""Idle live chats: every visitor message and agent reply restarts the clock; the sweep resolves a live
handoff silent past its idle limit (the default, or the chatbot's own) with reason "idle", and the
visitor can start anew."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from handoff.models import Handoff
from handoff.tasks import sweep_idle_handoffs
from handoff.transitions.claim import handoff_claim
from handoff.transitions.continue_ai import conversation_start_new
from handoff.transitions.idle import handoff_idle_sweep
from handoff.transitions.reply import handoff_reply
from handoff.transitions.resolve import handoff_resolve
from pivra.errors import Conflict
from tests.handoff_helpers import new_visitor, outbox_events, request, say

pytestmark = pytest.mark.django_db


def _live(bot, agent):
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    handoff = handoff_claim(agent=agent, conversation_public_id=str(conversation.public_id))
    return visitor, conversation, handoff


def test_messages_on_both_sides_restart_the_idle_clock(bot, personas) -> None:
    visitor, conversation, handoff = _live(bot, personas.owner)
    handoff.refresh_from_db()
    assert handoff.last_message_at is None and handoff.claimed_at is not None
    say(visitor, conversation, "Hello?")
    handoff.refresh_from_db()
    first = handoff.last_message_at
    assert first is not None and first >= handoff.claimed_at
    # The clock moves at most once a minute (idle.py): a minute later, the agent's reply moves it.
    first -= timedelta(seconds=61)
    Handoff.objects.filter(pk=handoff.pk).update(last_message_at=first)
    handoff_reply(agent=personas.owner, conversation_public_id=str(conversation.public_id), text="Hi", client_id="r1")
    handoff.refresh_from_db()
    assert handoff.last_message_at is not None and handoff.last_message_at > first


def test_a_pending_handoff_has_no_idle_clock(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    say(visitor, conversation, "Anyone?")
    handoff.refresh_from_db()
    assert handoff.last_message_at is None


def test_the_sweep_resolves_a_silent_live_chat_and_the_visitor_starts_anew(bot, personas, settings) -> None:
    settings.HANDOFF_IDLE_MINUTES = 30
    visitor, conversation, handoff = _live(bot, personas.owner)
    say(visitor, conversation, "Thanks, one moment")
    with pytest.raises(Conflict, match="team member is with you"):
        conversation_start_new(visitor=visitor)
    later = timezone.now() + timedelta(minutes=29)
    assert handoff_idle_sweep(now=later) == (0, 0)
    much_later = timezone.now() + timedelta(minutes=31)
    assert handoff_idle_sweep(now=much_later) == (0, 1)
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.RESOLVED and handoff.resolve_reason == "idle"
    assert handoff.resolved_by is None
    conversation.refresh_from_db()
    assert conversation.status == "closed"
    last = conversation.events.order_by("-seq").first()
    assert last is not None and last.kind == "handoff.resolved" and last.data == {"reason": "idle"}
    [resolved] = outbox_events("handoff.resolved")
    assert resolved.payload["data"]["reason"] == "idle"
    fresh = conversation_start_new(visitor=visitor)
    assert fresh.pk != conversation.pk
    assert handoff_idle_sweep(now=much_later) == (0, 0)


def test_the_chatbots_own_idle_limit_wins(bot, personas, settings) -> None:
    settings.HANDOFF_IDLE_MINUTES = 30
    bot.handoff_idle_minutes = 1
    bot.save(update_fields=["handoff_idle_minutes"])
    _visitor, _conversation, handoff = _live(bot, personas.owner)
    assert handoff_idle_sweep(now=timezone.now() + timedelta(seconds=30)) == (0, 0)
    assert handoff_idle_sweep(now=timezone.now() + timedelta(seconds=90)) == (0, 1)
    handoff.refresh_from_db()
    assert handoff.resolve_reason == "idle"


def test_a_late_message_saves_the_chat_from_the_sweep(bot, personas, settings) -> None:
    """The guard re-checks the silence: a message after the sweep's query keeps the chat live."""
    from handoff.transitions.idle import handoff_resolve_idle, idle_handoffs

    settings.HANDOFF_IDLE_MINUTES = 30
    visitor, conversation, handoff = _live(bot, personas.owner)
    Handoff.objects.filter(pk=handoff.pk).update(last_message_at=timezone.now() - timedelta(minutes=45))
    now = timezone.now()
    [(found, cutoff)] = idle_handoffs(now=now)
    say(visitor, conversation, "Still here!")
    assert not handoff_resolve_idle(handoff_id=found, cutoff=cutoff, now=now)
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.ACTIVE


def test_resolve_reasons_are_recorded(bot, personas) -> None:
    _visitor, conversation, handoff = _live(bot, personas.owner)
    handoff_resolve(agent=personas.owner, conversation_public_id=str(conversation.public_id))
    handoff.refresh_from_db()
    assert handoff.resolve_reason == "agent"
    _visitor2, older = new_visitor(bot)
    old = request(_visitor2, older)
    newer = conversation_start_new(visitor=_visitor2)
    request(_visitor2, newer)
    old.refresh_from_db()
    assert old.status == Handoff.Status.RESOLVED and old.resolve_reason == "superseded"


def test_the_beat_task_runs_the_sweep(bot, personas) -> None:
    _visitor, _conversation, handoff = _live(bot, personas.owner)
    Handoff.objects.filter(pk=handoff.pk).update(claimed_at=timezone.now() - timedelta(days=1))
    sweep_idle_handoffs()
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.RESOLVED


def test_the_beat_schedule_has_the_idle_sweep(settings) -> None:
    from pivra.celery import app

    entry = app.conf.beat_schedule["idle-sweep"]
    assert entry["task"] == "handoff.tasks.sweep_idle_handoffs"
    assert entry["schedule"] == settings.HANDOFF_SWEEP_SECONDS
    assert "handoff.tasks.sweep_idle_handoffs" in app.tasks


def test_the_idle_query_is_one_statement_with_each_chatbots_limit_and_the_cap(bot, personas, settings) -> None:
    """Chats under three limits (the default and two overrides) are found by one query, oldest id
    first, capped in SQL; each with the cutoff of its own limit."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    from handoff.transitions.idle import idle_handoffs
    from tests.factories import make_chatbot
    from tests.handoff_helpers import enable_handoff

    settings.HANDOFF_IDLE_MINUTES = 30
    short = enable_handoff(make_chatbot(personas.workspace, name="Short", handoff_idle_minutes=5))
    medium = enable_handoff(make_chatbot(personas.workspace, name="Medium", handoff_idle_minutes=10))
    chats = {name: _live(chatbot, personas.owner)[2] for name, chatbot in (("d", bot), ("s", short), ("m", medium))}
    now = timezone.now()
    Handoff.objects.filter(pk__in=[h.pk for h in chats.values()]).update(last_message_at=now - timedelta(minutes=7))
    with CaptureQueriesContext(connection) as captured:
        found = idle_handoffs(now=now)
    assert len(captured.captured_queries) == 1
    assert found == [(chats["s"].pk, now - timedelta(minutes=5))]  # 7 min: past 5, not 10 nor 30
    Handoff.objects.filter(pk__in=[h.pk for h in chats.values()]).update(last_message_at=now - timedelta(minutes=31))
    assert [pk for pk, _ in idle_handoffs(now=now)] == sorted(h.pk for h in chats.values())
    assert idle_handoffs(now=now, limit=2) == [
        (pk, now - timedelta(minutes={"d": 30, "s": 5, "m": 10}[name]))
        for name, pk in sorted(((n, h.pk) for n, h in chats.items()), key=lambda item: item[1])[:2]
    ]
    # Nobody wrote yet: the claim time counts.
    Handoff.objects.filter(pk=chats["d"].pk).update(last_message_at=None, claimed_at=now - timedelta(minutes=29))
    assert chats["d"].pk not in [pk for pk, _ in idle_handoffs(now=now)]
