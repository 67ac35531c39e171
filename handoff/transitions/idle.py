"""Idle live chats: a live (active) handoff that neither side has written in for the idle limit
(``PIVRA_HANDOFF_IDLE_MINUTES``, or the chatbot's ``handoff_idle_minutes``) is resolved with reason
"idle", so the visitor can start anew ("Start new conversation" is refused only while an agent is live).

The idle clock is ``Handoff.last_message_at`` — restarted by visitor messages (folded into the
message's event insert, ``conversations.services.event_append(touch_live_handoff=True)``) and agent
replies (folded into the reply's read, handoff/queries.py) — or, before the first message, the claim
time. To spare the hot paths a write of an indexed column per message, the clock moves only when it
is at least 60 s old (``handoff.queries.IDLE_CLOCK_STEP``): it may lag the latest message by up to
60 s, so a chat is resolved up to a minute earlier than "idle minutes after the very last message"
(the limit is in minutes). A message that arrives after a chat was found idle always moves it (it is
then at least a minute old), so a late message still saves the chat: the resolve re-checks the
silence under the row's lock. The sweep runs on beat every ``PIVRA_HANDOFF_SWEEP_SECONDS``, and
first returns to the queue whatever live chat has an agent who can no longer act."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.db.models import DateTimeField, DurationField, ExpressionWrapper, F, Q, Value
from django.db.models.functions import Coalesce
from django.utils import timezone

from handoff.models import Handoff
from handoff.transitions.requeue import handoffs_requeue_stranded
from handoff.transitions.resolve import resolve_transition

REASON_IDLE = "idle"


def _silent_since(cutoff: datetime) -> Q:
    """Live and silent since ``cutoff``: the last message, or the claim when nobody has written yet."""
    return Q(status=Handoff.Status.ACTIVE) & (
        Q(last_message_at__lte=cutoff) | Q(last_message_at__isnull=True, claimed_at__lte=cutoff)
    )


def idle_handoffs(*, now: datetime, limit: int = 1000) -> list[tuple[int, datetime]]:
    """(handoff id, its cutoff) of the live handoffs silent for longer than their idle limit (the
    chatbot's ``handoff_idle_minutes``, else ``PIVRA_HANDOFF_IDLE_MINUTES``), oldest id first, at most
    ``limit``: one query, the per-chatbot limit and the cap computed by PostgreSQL."""
    idle_minutes = Coalesce(F("chatbot__handoff_idle_minutes"), Value(int(settings.HANDOFF_IDLE_MINUTES)))
    cutoff = ExpressionWrapper(
        Value(now, output_field=DateTimeField())
        - ExpressionWrapper(idle_minutes * Value(timedelta(minutes=1)), output_field=DurationField()),
        output_field=DateTimeField(),
    )
    rows = (
        Handoff.objects.filter(status=Handoff.Status.ACTIVE)
        .annotate(silent_since=Coalesce("last_message_at", "claimed_at"), cutoff=cutoff)
        .filter(silent_since__lte=F("cutoff"))
        .order_by("pk")
        .values_list("pk", "cutoff")[:limit]
    )
    return [(int(pk), at) for pk, at in rows]


def handoff_resolve_idle(*, handoff_id: int, cutoff: datetime, now: datetime) -> bool:
    """Resolve one live handoff with reason "idle" — unless a message (or a requeue, a resolve) came
    in since it was found: the guard re-checks the silence under the row's lock."""
    handoff = Handoff.objects.filter(pk=handoff_id).first()
    if handoff is None:
        return False
    with transaction.atomic():
        return resolve_transition(
            handoff=handoff,
            guard=_silent_since(cutoff),
            now=now,
            agent=None,
            text="Conversation closed: no messages for a while. Start a new conversation any time.",
            reason=REASON_IDLE,
        )


def handoff_idle_sweep(*, now: datetime | None = None, limit: int = 1000) -> tuple[int, int]:
    """Beat: stranded live chats back to the queue, then idle ones resolved; (requeued, resolved)."""
    now = now or timezone.now()
    requeued = handoffs_requeue_stranded(now=now, limit=limit)
    resolved = sum(
        handoff_resolve_idle(handoff_id=pk, cutoff=cutoff, now=now)
        for pk, cutoff in idle_handoffs(now=now, limit=limit)
    )
    return requeued, resolved
