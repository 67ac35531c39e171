"""An offer of a waiting handoff to one agent: a colleague's transfer ("transfer") or round robin ("route").

While an offer runs only its agent may claim (accepting is claiming; ``claim`` clears the offer).
It ends when that agent declines or when it expires (the beat sweep ``handoff_offers_expire``): a
transfer goes back to everyone through the one way back to the queue (``requeue.handoff_requeue``), a
round-robin offer to the next agent (``routing.handoff_route``). An offer also ends with the claim that
accepts it, a take-over, a requeue, and the handoff's expiry to Team busy (``timers``).

Lock order: the handoff row (``select_for_update``) before the conversation row, as every transition.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from chatbots.models import Membership
from handoff.models import Handoff
from handoff.state import agent_display_name
from handoff.transitions.requeue import REASON_TRANSFER_DECLINED, REASON_TRANSFER_EXPIRED, handoff_requeue
from handoff.transitions.shared import agent_handoff, cleared_offer, offer_ended_on_commit
from pivra.console.revocation import console_user_group
from pivra.errors import Conflict, DomainError
from pivra.realtime import send_on_commit

KIND_TRANSFER = "transfer"
KIND_ROUTE = "route"
OFFER_KINDS = (KIND_TRANSFER, KIND_ROUTE)
# The frame to the offered agent's console sockets (every page of theirs shows the notice); the
# notice goes away with ``shared.OFFER_ENDED_FRAME``.
OFFER_FRAME = "offer"
# Why an offer ended without a claim (the ``offer.ended`` frame's ``reason``).
REASON_EXPIRED = "expired"
REASON_DECLINED = "declined"
# A transfer that ends so goes back to the queue with this reason (the thread's and the outbox's).
TRANSFER_REQUEUE_REASONS = {REASON_EXPIRED: REASON_TRANSFER_EXPIRED, REASON_DECLINED: REASON_TRANSFER_DECLINED}
OFFER_FIELDS = ("offered_to", "offered_by", "offer_kind", "offer_expires_at")


def handoff_offer_to_agent(*, handoff: Handoff, to: User, kind: str, by: User | None, seconds: int) -> None:
    """Offer a pending handoff to ``to`` for ``seconds``, inside the caller's transaction (which holds
    the handoff row). The agent's consoles are told after commit; the caller writes the thread's event."""
    if kind not in OFFER_KINDS:
        raise DomainError("invalid_offer", _("Unknown offer kind %(kind)s.") % {"kind": repr(kind)})
    expires_at = timezone.now() + timedelta(seconds=seconds)
    handoff.offered_to, handoff.offered_by, handoff.offer_kind, handoff.offer_expires_at = to, by, kind, expires_at
    handoff.save(update_fields=list(OFFER_FIELDS))
    send_on_commit([console_user_group(to.pk)], offer_frame(handoff=handoff))


def offer_frame(*, handoff: Handoff) -> dict[str, Any]:
    """What the offered agent's console shows: a notice with Accept and Decline."""
    assert handoff.offer_expires_at is not None
    conversation = handoff.conversation
    return {
        "type": OFFER_FRAME,
        "conversation": str(conversation.public_id),
        "kind": handoff.offer_kind,
        "by": agent_display_name(handoff.offered_by),
        "chatbot": handoff.chatbot.name,
        "expires_at": handoff.offer_expires_at.isoformat(),
        "url": f"/dashboard/conversations/{conversation.public_id}/",
    }


def offers_for_agent(*, agent: User, now: datetime | None = None) -> list[dict[str, Any]]:
    """The offers running for ``agent`` now, as their ``offer`` frames (a console page that opens or
    reconnects shows them again)."""
    now = now or timezone.now()
    running = (
        Handoff.objects.select_related("conversation", "chatbot", "offered_by")
        .filter(offered_to=agent, status=Handoff.Status.PENDING, offer_expires_at__gt=now)
        .filter(workspace_id__in=Membership.objects.filter(user=agent).values("workspace_id"))
        .order_by("offer_expires_at")
    )
    return [offer_frame(handoff=handoff) for handoff in running[:50]]


def offer_blocks_claim(*, handoff: Handoff, agent: User, now: datetime) -> bool:
    """True while the handoff waits on an unexpired offer to someone other than ``agent``."""
    return (
        handoff.status == Handoff.Status.PENDING
        and handoff.offered_to_id is not None
        and handoff.offered_to_id != agent.pk
        and handoff.offer_expires_at is not None
        and handoff.offer_expires_at > now
    )


def claim_allowed_by_offer(*, agent: User, now: datetime) -> Q:
    """The claim's guard, as a filter: no offer, an offer to ``agent``, or an expired offer."""
    return Q(offered_to__isnull=True) | Q(offered_to=agent) | Q(offer_expires_at__lte=now)


def handoff_offer_decline(*, agent: User, conversation_public_id: str, now: datetime | None = None) -> Handoff:
    """The offered agent says no: a transfer goes back to everyone at once, round robin to the next."""
    now = now or timezone.now()
    handoff = agent_handoff(agent=agent, conversation_public_id=conversation_public_id)
    if not handoff_offer_end(handoff_id=handoff.pk, reason=REASON_DECLINED, now=now, agent=agent):
        raise Conflict("no_offer", _("This conversation is not being offered to you (any more)."))
    handoff.refresh_from_db()
    return handoff


def handoff_offers_expire(*, now: datetime | None = None, limit: int = 1000) -> int:
    """The sweep (beat, every ``PIVRA_HANDOFF_SWEEP_SECONDS``): end every offer past its expiry."""
    now = now or timezone.now()
    due = Handoff.objects.filter(offered_to__isnull=False, offer_expires_at__lte=now).values_list("pk", flat=True)
    return sum(handoff_offer_end(handoff_id=pk, reason=REASON_EXPIRED, now=now) for pk in list(due[:limit]))


def handoff_offer_end(*, handoff_id: int, reason: str, now: datetime, agent: User | None = None) -> bool:
    """End the offer without a claim — expired, or declined by ``agent`` — and dispatch by its kind: a
    transfer goes back to everyone (``requeue``), round robin to the next agent (``routing``).
    False when there is no such offer any more (claimed, ended, or not ``agent``'s)."""
    with transaction.atomic():
        handoff = (
            Handoff.objects.select_for_update(of=("self",))
            .select_related("chatbot", "conversation")
            .filter(pk=handoff_id, offered_to__isnull=False)
            .first()
        )
        if handoff is None:
            return False
        if reason == REASON_EXPIRED and (handoff.offer_expires_at is None or handoff.offer_expires_at > now):
            return False
        if reason == REASON_DECLINED and (agent is None or handoff.offered_to_id != agent.pk):
            return False
        assert handoff.offered_to_id is not None
        offer_ended_on_commit(agent_id=handoff.offered_to_id, conversation=handoff.conversation, reason=reason)
        if handoff.status == Handoff.Status.PENDING and handoff.offer_kind == KIND_TRANSFER:
            # A transfer nobody accepted: first claim wins again, with a fresh response timeout — through
            # the one way back to the queue, which also clears the offer.
            return handoff_requeue(
                handoff_id=handoff.pk,
                reason=TRANSFER_REQUEUE_REASONS[reason],
                actor=agent,
                now=now,
                transfer_ended=True,
            )
        kind = handoff.offer_kind
        Handoff.objects.filter(pk=handoff.pk).update(**cleared_offer())
        for field, value in cleared_offer().items():
            setattr(handoff, field, value)
        if handoff.status == Handoff.Status.PENDING and kind == KIND_ROUTE:
            from handoff.transitions.routing import handoff_route  # routing offers through this module

            handoff_route(handoff=handoff, now=now)
        # Otherwise a stale offer (the handoff timed out or was resolved meanwhile): nothing else to do.
    return True
