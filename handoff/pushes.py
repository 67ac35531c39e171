"""Repair of live pushes lost between commit and publish.

Every conversation event is published after its transaction commits and then leaves a push receipt
(``pivra.realtime``). A process killed in between — a Celery worker expiring a handoff, say — leaves
the event committed but unheard by sockets that stay open: a widget would wait for an agent forever.
This sweep, run by beat, finds events committed a moment ago without a receipt and publishes them
again with a fresh state snapshot. State announcements keep receipts of their own, because the
process can also die between a transaction's event push and its state push: then only the state is
announced again. A repeated frame is harmless: clients keep events by seq and ignore state older
than what they show.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Max, Q
from django.utils import timezone

from conversations.frames import event_frame
from conversations.models import Conversation, Event
from handoff.models import Handoff
from handoff.transitions.shared import announce_state
from pivra.realtime import (
    console_group,
    conversation_group,
    push_receipt_record,
    push_receipts,
    send_now_rollback_unsafe,
    visitor_group,
)

# The kinds after which handoff.transitions announce the conversation's new state
# (tests/test_push_repair.py reads the transitions' code to keep both lists complete).
STATE_KINDS = frozenset(
    {
        "handoff.requested",
        "handoff.claimed",
        "handoff.timed_out",
        "handoff.resolved",
        "lead.captured",
        "handoff.transferred",
        "handoff.transfer_ended",
        "handoff.taken_over",
        "handoff.released",
        "conversation.ended",
    }
)
# The kinds handoff.transitions append with notify_console=True: the console hears them too.
CONSOLE_KINDS = frozenset(
    {
        "handoff.requested",
        "handoff.claimed",
        "handoff.timed_out",
        "handoff.resolved",
        "lead.captured",
        "conversation.continued",
        "handoff.transferred",
        "handoff.transfer_ended",
        "handoff.taken_over",
        "handoff.released",
        "conversation.ended",
    }
)
LOOK_BACK = timedelta(minutes=2)
GRACE = timedelta(seconds=2)  # the normal publish is done in milliseconds; give it time first
MAX_EVENTS = 200


def conversation_pushes_repair(*, now: datetime | None = None) -> int:
    """Republish events committed between two minutes and two seconds ago that have no push receipt,
    and the state after a state-changing event that has no state receipt; returns how many
    conversations needed it."""
    now = now or timezone.now()
    recent = {
        row["conversation_id"]: (row["top"], row["top_state"] or 0)
        for row in Event.objects.filter(created_at__gte=now - LOOK_BACK, created_at__lte=now - GRACE)
        .order_by()
        .values("conversation_id")
        .annotate(top=Max("seq"), top_state=Max("seq", filter=Q(kind__in=STATE_KINDS)))
    }
    pushed = push_receipts(recent)
    stated = push_receipts(recent, state=True)
    behind = [pk for pk, (top, _) in recent.items() if pushed[pk] < top]
    stale = [pk for pk, (_, top_state) in recent.items() if pk not in behind and stated[pk] < top_state]
    conversations = Conversation.objects.select_related("chatbot", "visitor").filter(pk__in=behind + stale)
    for conversation in conversations:
        if conversation.pk in stale:  # its events went out; the state after them did not
            announce_state(conversation=conversation, handoff=_handoff(conversation))
        else:
            _republish(conversation, after_seq=pushed[conversation.pk])
    return len(behind) + len(stale)


def _handoff(conversation: Conversation) -> Handoff | None:
    return Handoff.objects.filter(conversation=conversation).first()


def _republish(conversation: Conversation, *, after_seq: int) -> None:
    events = list(Event.objects.filter(conversation=conversation, seq__gt=after_seq).order_by("seq")[:MAX_EVENTS])
    visitor, watching = [visitor_group(conversation.visitor.public_id)], [conversation_group(conversation.public_id)]
    console = [console_group(conversation.chatbot.workspace_id)]
    delivered = True
    for event in events:
        team = watching + console if event.kind in CONSOLE_KINDS else watching
        # As event_append sends it: the visitor's frame to the widget, the team's to the console.
        for groups, frame in (
            (visitor, event_frame(event, conversation)),
            (team, event_frame(event, conversation, team=True)),
        ):
            delivered = send_now_rollback_unsafe(groups, frame) and delivered
    announce_state(conversation=conversation, handoff=_handoff(conversation))
    if delivered and events:
        push_receipt_record(conversation_id=conversation.pk, seq=events[-1].seq)
