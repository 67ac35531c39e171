"""Back to the queue: the one transition that turns a handoff someone held into a waiting one again —
the agent's release, an agent who left the workspace (removed, deactivated or deleted:
``handoff.departures``), the sweep's stranded chats, and a transfer the colleague declined or let expire
(``offers.handoff_offer_end``). Nobody is stranded with an agent who can no longer answer."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from actions.events import EventType
from chatbots.models import Membership
from conversations.agent_names import agent_public_name
from conversations.models import Conversation, Event
from conversations.services import conversation_lock, event_append
from handoff.models import Handoff
from handoff.state import agent_display_name
from handoff.transitions.shared import announce_state, cleared_offer, outbox_handoff_event
from handoff.transitions.timers import schedule_expiry

# Why a handoff went back to the queue (the event's and the outbox payload's ``reason``).
REASON_RELEASED = "released"  # the agent let it go
REASON_TRANSFER_EXPIRED = "transfer_expired"  # the colleague did not accept in time
REASON_TRANSFER_DECLINED = "transfer_declined"  # the colleague said no (or left the workspace)
REASON_MEMBER_REMOVED = "member_removed"  # the agent left the workspace
REASON_AGENT_DEACTIVATED = "agent_deactivated"
REASON_AGENT_DELETED = "agent_deleted"
REASON_AGENT_MISSING = "agent_missing"  # found by the sweep: no agent, or one no longer a member


def handoff_requeue(
    *,
    handoff_id: int,
    reason: str,
    actor: User | None,
    now: datetime | None = None,
    claimed_by_id: int | None = None,
    text: str | None = None,
    only_stranded: bool = False,
    transfer_ended: bool = False,
) -> bool:
    """Active → pending: the claim is cleared, a fresh deadline (the chatbot's timeout) and its expiry
    timer, the thread's event, the widget's and the queue's broadcasts, and ``handoff.released`` in the
    outbox. Runs in its own or the caller's transaction; False when the guard refused (not active, or
    — when ``claimed_by_id`` is given — no longer claimed by that user).

    ``text`` replaces the thread's line ("Alice left the conversation. …") for callers that say more.
    ``actor`` is who caused it (the agent, an admin), None for the system.
    ``only_stranded``: only when the claiming agent can no longer act (the sweep's re-check under lock).
    ``transfer_ended``: instead of an active handoff, a pending one whose transfer offer ended without
    an accept (the caller, ``offers``, holds the row and knows the offer is a transfer): the thread says
    "Bob didn't accept; …" (``handoff.transfer_ended``) and the payload names the colleague too."""
    now = now or timezone.now()
    with transaction.atomic():
        # The handoff row first, then the conversation's (the lock order of every transition).
        handoff = (
            Handoff.objects.select_for_update(of=("self",))
            .select_related("chatbot", "claimed_by", "offered_to", "offered_by")
            .filter(pk=handoff_id)
            .first()
        )
        if handoff is None or not _may_requeue(handoff, claimed_by_id, only_stranded, transfer_ended):
            return False
        # Who had it: the agent who held it, or — a transfer coming back — the one who transferred it.
        previous = handoff.offered_by if transfer_ended else handoff.claimed_by
        colleague = handoff.offered_to if transfer_ended else None
        _back_in_line(handoff, now=now)
        conversation = conversation_lock(conversation_id=handoff.conversation_id)
        if transfer_ended:
            _note_transfer_ended(conversation, colleague=colleague, reason=reason)
        else:
            _note_released(conversation, previous=previous, reason=reason, actor=actor, text=text)
        outbox_handoff_event(
            EventType.HANDOFF_RELEASED,
            conversation,
            handoff,
            reason=reason,
            # Payloads name teammates as the console does (the thread lines use the public name).
            previous_agent=_named(previous),
            **({"offered_to": _named(colleague)} if transfer_ended else {}),
        )
        announce_state(conversation=conversation, handoff=handoff)
        schedule_expiry(handoff, now=now)
    return True


def _may_requeue(handoff: Handoff, claimed_by_id: int | None, only_stranded: bool, transfer_ended: bool) -> bool:
    """The guard, under the handoff row's lock."""
    if transfer_ended:
        return handoff.status == Handoff.Status.PENDING and handoff.offered_to_id is not None
    if handoff.status != Handoff.Status.ACTIVE:
        return False
    if claimed_by_id is not None and handoff.claimed_by_id != claimed_by_id:
        return False
    return not (only_stranded and _agent_can_act(handoff))


def _back_in_line(handoff: Handoff, *, now: datetime) -> None:
    """Pending again, as a fresh request: no claim, no offer (it belonged to the claim that ended), no
    Team busy from before (the next claim is not late), a new response timeout."""
    handoff.status = Handoff.Status.PENDING
    handoff.claimed_by = None
    handoff.claimed_at = None
    handoff.last_message_at = None
    handoff.timed_out_at = None
    handoff.busy_reason = ""
    handoff.deadline_at = now + timedelta(seconds=handoff.chatbot.handoff_timeout_seconds)
    handoff.queued_at = now  # the expected wait is measured from here (queue_position.py)
    for field, value in cleared_offer().items():
        setattr(handoff, field, value)
    handoff.save(
        update_fields=[
            "status",
            "claimed_by",
            "claimed_at",
            "last_message_at",
            "timed_out_at",
            "busy_reason",
            "deadline_at",
            "queued_at",
            *cleared_offer(),
        ]
    )


def _note_released(
    conversation: Conversation, *, previous: User | None, reason: str, actor: User | None, text: str | None
) -> None:
    name = agent_public_name(previous) if previous is not None else "Your team member"
    event_append(
        conversation=conversation,
        kind="handoff.released",
        author=Event.Author.SYSTEM,
        text=text or f"{name} left the conversation. Waiting for a team member…",
        agent=previous,
        # For the team only (the visitor's frame carries none of it: conversations.frames).
        data={"reason": reason, "by": actor.pk if actor is not None else None},
        notify_console=True,
    )


def _note_transfer_ended(conversation: Conversation, *, colleague: User | None, reason: str) -> None:
    name = agent_public_name(colleague) if colleague is not None else "Your team member"
    event_append(
        conversation=conversation,
        kind="handoff.transfer_ended",
        author=Event.Author.SYSTEM,
        text=f"{name} didn't accept; the conversation is back in the queue.",
        # ``to`` is the public name the text shows (the widget's line); ``reason`` is for the team only.
        data={"reason": reason, "to": name},
        notify_console=True,
    )


def _named(user: User | None) -> dict[str, Any] | None:
    return None if user is None else {"id": user.pk, "name": agent_display_name(user)}


def _agent_can_act(handoff: Handoff) -> bool:
    """The sweep's re-check, under the handoff row's lock. A plain read, not ``agent_can_act_locked``: a
    removal holds the membership row and then waits for this handoff row, so waiting for the membership
    here could deadlock; and a removal still uncommitted requeues this chat itself."""
    if handoff.claimed_by_id is None:
        return False
    return Membership.objects.filter(
        user_id=handoff.claimed_by_id, workspace_id=handoff.workspace_id, user__is_active=True
    ).exists()


def stranded_handoffs() -> QuerySet[Handoff]:
    """Active handoffs whose agent cannot act: none (a deleted user), deactivated, or no longer a member."""
    member = Membership.objects.filter(user_id=OuterRef("claimed_by_id"), workspace_id=OuterRef("workspace_id"))
    return Handoff.objects.filter(status=Handoff.Status.ACTIVE).filter(
        Q(claimed_by__isnull=True) | Q(claimed_by__is_active=False) | ~Exists(member)
    )


def handoffs_requeue_stranded(*, now: datetime | None = None, limit: int = 1000) -> int:
    """The sweep's safety net: whatever left an agent unable to act without a hook (a bulk
    ``QuerySet.update``, data from before this check, a race with a deletion) goes back to the queue."""
    ids = list(stranded_handoffs().order_by("pk").values_list("pk", flat=True)[:limit])
    return sum(
        handoff_requeue(handoff_id=pk, reason=REASON_AGENT_MISSING, actor=None, now=now, only_stranded=True)
        for pk in ids
    )
