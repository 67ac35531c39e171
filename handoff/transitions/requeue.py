"""Back to the queue: the one transition that turns a live (active) handoff into a waiting one again —
the agent's release, a transfer nobody accepted, and an agent who left the workspace (removed,
deactivated or deleted). Nobody is stranded with an agent who can no longer answer."""

from __future__ import annotations

from datetime import datetime, timedelta

from django.contrib.auth.models import User
from django.db import connection, transaction
from django.db.models import Exists, OuterRef, Q, QuerySet
from django.utils import timezone

from actions.events import EventType
from chatbots.models import Membership
from conversations.agent_names import agent_public_name
from conversations.models import Event
from conversations.services import conversation_lock, event_append
from handoff.models import Handoff
from handoff.state import agent_display_name
from handoff.transitions.offers import REASON_DECLINED, handoff_offer_end
from handoff.transitions.shared import announce_state, outbox_handoff_event
from handoff.transitions.timers import schedule_expiry

# Why a handoff went back to the queue (the event's and the outbox payload's ``reason``).
REASON_RELEASED = "released"  # the agent let it go
REASON_TRANSFER_EXPIRED = "transfer_expired"  # the colleague did not accept in time
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
) -> bool:
    """Active → pending: the claim is cleared, a fresh deadline (the chatbot's timeout) and its expiry
    timer, the thread's event, the widget's and the queue's broadcasts, and ``handoff.released`` in the
    outbox. Runs in its own or the caller's transaction; False when the guard refused (not active, or
    — when ``claimed_by_id`` is given — no longer claimed by that user).

    ``text`` replaces the thread's line ("Alice left the conversation. …") for callers that say more
    (a transfer). ``actor`` is who caused it (the agent, an admin), None for the system.
    ``only_stranded``: only when the claiming agent can no longer act (the sweep's re-check under lock)."""
    now = now or timezone.now()
    with transaction.atomic():
        # The handoff row first, then the conversation's (the lock order of every transition).
        handoff = (
            Handoff.objects.select_for_update(of=("self",))
            .select_related("chatbot", "claimed_by")
            .filter(pk=handoff_id)
            .first()
        )
        if handoff is None or handoff.status != Handoff.Status.ACTIVE:
            return False
        if claimed_by_id is not None and handoff.claimed_by_id != claimed_by_id:
            return False
        if only_stranded and _agent_can_act(handoff):
            return False
        previous = handoff.claimed_by
        handoff.status = Handoff.Status.PENDING
        handoff.claimed_by = None
        handoff.claimed_at = None
        handoff.last_message_at = None
        handoff.deadline_at = now + timedelta(seconds=handoff.chatbot.handoff_timeout_seconds)
        # Any open offer belonged to the claim that just ended.
        handoff.offered_to = handoff.offered_by = None
        handoff.offer_kind = ""
        handoff.offer_expires_at = None
        handoff.save(
            update_fields=[
                "status",
                "claimed_by",
                "claimed_at",
                "last_message_at",
                "deadline_at",
                "offered_to",
                "offered_by",
                "offer_kind",
                "offer_expires_at",
            ]
        )
        conversation = conversation_lock(conversation_id=handoff.conversation_id)
        name = agent_public_name(previous) if previous is not None else "Your team member"
        event_append(
            conversation=conversation,
            kind="handoff.released",
            author=Event.Author.SYSTEM,
            text=text or f"{name} left the conversation. Waiting for a team member…",
            agent=previous,
            data={"reason": reason, "by": actor.pk if actor is not None else None},
            notify_console=True,
        )
        outbox_handoff_event(
            EventType.HANDOFF_RELEASED,
            conversation,
            handoff,
            reason=reason,
            # Payloads name teammates as the console does (the thread line above uses the public name).
            previous_agent=None if previous is None else {"id": previous.pk, "name": agent_display_name(previous)},
        )
        announce_state(conversation=conversation, handoff=handoff)
        schedule_expiry(handoff, now=now)
    return True


def _agent_can_act(handoff: Handoff) -> bool:
    """The sweep's re-check, under the handoff row's lock. A plain read, not ``agent_can_act_locked``: a
    removal holds the membership row and then waits for this handoff row, so waiting for the membership
    here could deadlock; and a removal still uncommitted requeues this chat itself."""
    if handoff.claimed_by_id is None:
        return False
    return Membership.objects.filter(
        user_id=handoff.claimed_by_id, workspace_id=handoff.workspace_id, user__is_active=True
    ).exists()


def handoffs_lock_for_member(*, user_id: int, workspace_id: int | None) -> None:
    """Lock (FOR UPDATE) the handoffs a departing member holds or is offered, *before* the removal
    touches their membership or user row. A claim takes the handoff row and then share-locks the
    membership (``agent_can_act_locked``); a removal that took the membership first and then waited
    for that handoff (to end an offer the claim is accepting) would deadlock with it. Taken in this
    order, the removal waits for the claim's commit instead and then requeues what it claimed. Only
    inside a transaction (outside one, each statement commits and holds nothing)."""
    if not connection.in_atomic_block:
        return
    mine = Q(status=Handoff.Status.ACTIVE, claimed_by_id=user_id) | Q(offered_to_id=user_id)
    rows = Handoff.objects.select_for_update().filter(mine)
    if workspace_id is not None:
        rows = rows.filter(workspace_id=workspace_id)
    list(rows.order_by("pk").values_list("pk", flat=True))


def handoffs_requeue_for_member(
    *, user_id: int, workspace_id: int | None, reason: str = REASON_MEMBER_REMOVED, actor: User | None = None
) -> int:
    """Return every live conversation the user holds — in one workspace, or in all of them
    (``workspace_id`` None) — to the queue; how many. Called in the transaction that removes the
    member, deactivates or deletes the user (``handoff.departures``), so the visitors see "Waiting
    for a team member…" again as that commits."""
    live = Handoff.objects.filter(status=Handoff.Status.ACTIVE, claimed_by_id=user_id)
    offered = Handoff.objects.filter(offered_to_id=user_id)
    if workspace_id is not None:
        live, offered = live.filter(workspace_id=workspace_id), offered.filter(workspace_id=workspace_id)
    ids = list(live.order_by("pk").values_list("pk", flat=True))
    requeued = sum(handoff_requeue(handoff_id=pk, reason=reason, actor=actor, claimed_by_id=user_id) for pk in ids)
    # A transfer or round-robin offer to them ends now, as if declined (to everyone, or to the next
    # agent), instead of keeping the visitor waiting on someone who left until the offer expires.
    gone = User(pk=user_id)
    for pk in list(offered.order_by("pk").values_list("pk", flat=True)):
        handoff_offer_end(handoff_id=pk, reason=REASON_DECLINED, now=timezone.now(), agent=gone)
    return requeued


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
