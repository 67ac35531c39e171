"""Repair of live pushes lost between commit and publish.

Every conversation event is published after its transaction commits and then leaves a push receipt
(``pivra.realtime``). A process killed in between — a Celery worker expiring a handoff, say — leaves
the event committed but unheard by sockets that stay open: a widget would wait for an agent forever.
This sweep, run by beat, finds events committed a moment ago without a receipt and publishes them
again with a fresh state snapshot. A repeated frame is harmless: clients keep events by seq and
ignore state older than what they show.
"""

from __future__ import annotations

from datetime import datetime, timedelta

from django.db.models import Max
from django.utils import timezone

from conversations.frames import event_frame
from conversations.models import Conversation, Event
from handoff.models import Handoff
from handoff.services import announce_state
from pivra.realtime import (
    console_group,
    conversation_group,
    push_receipt_record,
    push_receipts,
    send_now_rollback_unsafe,
    visitor_group,
)

# The kinds handoff.services appends with notify_console=True: the console hears them too.
CONSOLE_KINDS = frozenset(
    {
        "handoff.requested",
        "handoff.claimed",
        "handoff.timed_out",
        "handoff.resolved",
        "lead.captured",
        "conversation.continued",
    }
)
LOOK_BACK = timedelta(minutes=2)
GRACE = timedelta(seconds=2)  # the normal publish is done in milliseconds; give it time first
MAX_EVENTS = 200


def conversation_pushes_repair(*, now: datetime | None = None) -> int:
    """Republish events committed between two minutes and two seconds ago that have no push receipt;
    returns how many conversations needed it."""
    now = now or timezone.now()
    recent = dict(
        Event.objects.filter(created_at__gte=now - LOOK_BACK, created_at__lte=now - GRACE)
        .order_by()
        .values_list("conversation_id")
        .annotate(top=Max("seq"))
    )
    pushed = push_receipts(recent)
    behind = [pk for pk, top in recent.items() if pushed[pk] < top]
    for conversation in Conversation.objects.select_related("chatbot", "visitor").filter(pk__in=behind):
        _republish(conversation, after_seq=pushed[conversation.pk])
    return len(behind)


def _republish(conversation: Conversation, *, after_seq: int) -> None:
    events = list(Event.objects.filter(conversation=conversation, seq__gt=after_seq).order_by("seq")[:MAX_EVENTS])
    groups = [visitor_group(conversation.visitor.public_id), conversation_group(conversation.public_id)]
    console = [console_group(conversation.chatbot.workspace_id)]
    delivered = True
    for event in events:
        targets = groups + console if event.kind in CONSOLE_KINDS else groups
        delivered = send_now_rollback_unsafe(targets, event_frame(event, conversation)) and delivered
    announce_state(conversation=conversation, handoff=Handoff.objects.filter(conversation=conversation).first())
    if delivered and events:
        push_receipt_record(conversation_id=conversation.pk, seq=events[-1].seq)
