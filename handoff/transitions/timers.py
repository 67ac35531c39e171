"""Pending → Team busy: the per-handoff expiry timer, its re-arming when a worker starts, the expiry
transition, and the beat sweep that heals lost or late timers. An offer still running when the
handoff expires (round robin, say) ends with it, and the offered agent's notice goes away."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from actions.events import EventType
from chatbots.languages import owner_text
from conversations.models import Event
from conversations.services import conversation_lock, event_append
from handoff.models import Handoff
from handoff.transitions.shared import announce_state, cleared_offer, offer_ended_on_commit, outbox_handoff_event

# Celery's Redis transport hands a task with an ETA to a worker at once; the worker holds it unacked
# until the ETA. Held longer than the broker's visibility timeout, it is redelivered — again and
# again — so only deadlines comfortably inside that window get a timer of their own.
ETA_MARGIN = timedelta(seconds=30)


def _timer_horizon() -> timedelta:
    options = getattr(settings, "CELERY_BROKER_TRANSPORT_OPTIONS", None) or {}
    visibility = options.get("visibility_timeout", 3600)  # kombu's Redis default when unset
    return timedelta(seconds=float(visibility)) - ETA_MARGIN


def schedule_expiry(handoff: Handoff, *, now: datetime) -> None:
    """A timer at the deadline when it is safely short; the beat sweep (``handoff_expire_overdue``)
    expires every handoff in any case, so a long timeout, a lost task or a broker outage only
    delays Team busy by one sweep interval."""
    if handoff.deadline_at - now > _timer_horizon():
        return
    from handoff.tasks import expire_handoff

    handoff_id, deadline = handoff.pk, handoff.deadline_at
    # robust: the request is committed; a broker that is down must not turn it into an error.
    transaction.on_commit(lambda: expire_handoff.apply_async((handoff_id,), eta=deadline), robust=True)


def handoff_timers_rearm(*, now: datetime | None = None) -> int:
    """Give every pending handoff due within the timer horizon a fresh timer; returns how many.

    Run when a worker that runs timers starts. A worker killed while holding timers keeps them
    unacked in the broker until the visibility timeout (minutes), so without this the sweep alone —
    one pass every ``PIVRA_HANDOFF_SWEEP_SECONDS`` — would time out every handoff until then. A
    deadline already past fires at once. A handoff that gets two timers is expired once: expiry is
    a guarded update."""
    now = now or timezone.now()
    from handoff.tasks import expire_handoff

    due = (
        Handoff.objects.filter(status=Handoff.Status.PENDING, deadline_at__lte=now + _timer_horizon())
        .order_by("deadline_at")
        .values_list("pk", "deadline_at")
    )
    armed = 0
    for handoff_id, deadline in due.iterator(chunk_size=500):
        expire_handoff.apply_async((handoff_id,), eta=deadline)
        armed += 1
    return armed


# Why a handoff goes Team busy: its deadline passed, or the request skipped the wait because nobody
# was online or it came outside office hours (handoff.transitions.request).
BUSY_TIMEOUT = "timeout"
BUSY_OFFLINE = "offline"
BUSY_AFTER_HOURS = "after_hours"
SKIPPED_WAIT = (BUSY_OFFLINE, BUSY_AFTER_HOURS)
# The ``offer.ended`` frame's reason when the handoff itself expired under a running offer.
OFFER_END_TIMED_OUT = "timed_out"


def handoff_expire(*, handoff_id: int, now: datetime | None = None, reason: str = BUSY_TIMEOUT) -> bool:
    """Pending past its deadline → Team busy. Idempotent, never after a claim, never twice. The one
    way into Team busy: a request that skips the wait comes here too, with its deadline set to now."""
    now = now or timezone.now()
    with transaction.atomic():
        # The guard, under the row's lock (a racing claim that committed first makes it find nothing).
        handoff = (
            Handoff.objects.select_for_update(of=("self",))
            .select_related("chatbot")
            .filter(pk=handoff_id, status=Handoff.Status.PENDING, deadline_at__lte=now)
            .first()
        )
        if handoff is None:
            return False
        offered_to_id = handoff.offered_to_id
        # Team busy takes everyone off the hook: an offer still running (round robin) ends here.
        fields = {"status": Handoff.Status.BUSY, "timed_out_at": now, "busy_reason": reason, **cleared_offer()}
        Handoff.objects.filter(pk=handoff.pk).update(**fields)
        for field, value in fields.items():
            setattr(handoff, field, value)
        chatbot = handoff.chatbot
        conversation = conversation_lock(conversation_id=handoff.conversation_id)
        if offered_to_id is not None:
            offer_ended_on_commit(agent_id=offered_to_id, conversation=conversation, reason=OFFER_END_TIMED_OUT)
        event_append(
            conversation=conversation,
            kind="handoff.timed_out",
            author=Event.Author.SYSTEM,
            text=owner_text(
                chatbot=chatbot, name="offline" if reason in SKIPPED_WAIT else "busy", language=conversation.language
            ),
            data={"reason": reason},
            notify_console=True,
        )
        outbox_handoff_event(EventType.HANDOFF_TIMED_OUT, conversation, handoff, reason=reason)
        announce_state(conversation=conversation, handoff=handoff)
    return True


def handoff_expire_overdue(*, now: datetime | None = None, limit: int = 1000) -> int:
    """The sweep: expire every pending handoff whose deadline passed (heals lost or late timers)."""
    now = now or timezone.now()
    overdue = Handoff.objects.filter(status=Handoff.Status.PENDING, deadline_at__lte=now).values_list("pk", flat=True)
    return sum(handoff_expire(handoff_id=pk, now=now) for pk in list(overdue[:limit]))
