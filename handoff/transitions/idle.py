"""Idle live chats: a live (active) handoff that neither side has written in for the idle limit
(``PIVRA_HANDOFF_IDLE_MINUTES``, or the chatbot's ``handoff_idle_minutes``) is resolved with reason
"idle", so the visitor can start anew ("Start new conversation" is refused only while an agent is live).

The idle clock is ``Handoff.last_message_at`` — set by every visitor message (``handoff_touch``, from
the message pipeline) and every agent reply (folded into the reply's read, handoff/queries.py) — or,
before the first message, the claim time. The sweep runs on beat every ``PIVRA_HANDOFF_SWEEP_SECONDS``,
and first returns to the queue whatever live chat has an agent who can no longer act."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from chatbots.models import Chatbot
from handoff.models import Handoff
from handoff.transitions.requeue import handoffs_requeue_stranded
from handoff.transitions.resolve import resolve_transition

REASON_IDLE = "idle"

# Only a live handoff's clock moves. SKIP LOCKED: the caller holds the conversation's lock, and the
# handoff row is locked before the conversation's everywhere else; a transition holding it is
# changing the handoff anyway (resolve, requeue), so the touch never waits for it.
_TOUCH_SQL = """
UPDATE handoff_handoff SET last_message_at = %s
WHERE id = (SELECT t.id FROM handoff_handoff t WHERE t.conversation_id = %s AND t.status = 'active'{skip_locked})
"""


def handoff_touch(*, conversation_id: int, at: datetime) -> None:
    """A visitor wrote in a live chat: its idle clock starts again (inside the message's transaction)."""
    skip_locked = " FOR UPDATE SKIP LOCKED" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(_TOUCH_SQL.format(skip_locked=skip_locked), [at, conversation_id])


def _silent_since(cutoff: datetime) -> Q:
    """Live and silent since ``cutoff``: the last message, or the claim when nobody has written yet."""
    return Q(status=Handoff.Status.ACTIVE) & (
        Q(last_message_at__lte=cutoff) | Q(last_message_at__isnull=True, claimed_at__lte=cutoff)
    )


def _idle_limits(*, now: datetime) -> dict[int | None, datetime]:
    """The cutoff of each idle limit in use: the default (key None) and every chatbot's override."""
    overrides = {
        int(minutes)
        for minutes in Chatbot.objects.filter(handoff_idle_minutes__isnull=False)
        .values_list("handoff_idle_minutes", flat=True)
        .distinct()
        if minutes is not None
    }
    cutoffs: dict[int | None, datetime] = {None: now - timedelta(minutes=settings.HANDOFF_IDLE_MINUTES)}
    cutoffs.update({minutes: now - timedelta(minutes=minutes) for minutes in overrides})
    return cutoffs


def idle_handoffs(*, now: datetime) -> list[tuple[int, datetime]]:
    """(handoff id, its cutoff) of every live handoff silent for longer than its idle limit."""
    found: list[tuple[int, datetime]] = []
    for minutes, cutoff in _idle_limits(now=now).items():
        limit = (
            Q(chatbot__handoff_idle_minutes__isnull=True)
            if minutes is None
            else Q(chatbot__handoff_idle_minutes=minutes)
        )
        ids = Handoff.objects.filter(_silent_since(cutoff), limit).order_by("pk").values_list("pk", flat=True)
        found.extend((pk, cutoff) for pk in ids)
    return found


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
        handoff_resolve_idle(handoff_id=pk, cutoff=cutoff, now=now) for pk, cutoff in idle_handoffs(now=now)[:limit]
    )
    return requeued, resolved
