"""An agent claims a handoff: first claim wins, pending or busy (a late claim), the others get 409."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone
from django.utils.translation import gettext as _

from actions.events import EventType
from chatbots.presence import member_at_capacity
from conversations.agent_names import agent_public_name
from conversations.models import Event
from conversations.services import conversation_lock, event_append
from handoff.models import Handoff
from handoff.state import agent_display_name
from handoff.transitions.offers import claim_allowed_by_offer, offer_blocks_claim
from handoff.transitions.shared import (
    OPEN_STATUSES,
    agent_can_act_locked,
    agent_handoff,
    announce_state,
    cleared_offer,
    outbox_handoff_event,
)
from pivra.errors import Conflict, NotFound


def handoff_claim(*, agent: User, conversation_public_id: str, now: datetime | None = None) -> Handoff:
    """Exactly one concurrent caller wins; the others get 409 naming who holds it."""
    now = now or timezone.now()
    handoff = agent_handoff(agent=agent, conversation_public_id=conversation_public_id)
    # Capacity (Membership.max_live_chats, chatbots/presence.py): a soft cap, read before the claim —
    # two claims by one agent at the same instant may both pass it. Re-claiming one's own chat is no new chat.
    if (
        handoff.status in OPEN_STATUSES
        and handoff.claimed_by_id != agent.pk
        and member_at_capacity(user_id=agent.pk, workspace_id=handoff.workspace_id)
    ):
        raise Conflict("over_capacity", _("You are at your limit of live chats. Resolve or release one first."))
    with transaction.atomic():
        # While an offer runs (a transfer, round robin) only its agent may claim; claiming ends it.
        won = (
            Handoff.objects.filter(pk=handoff.pk, status__in=OPEN_STATUSES)
            .filter(claim_allowed_by_offer(agent=agent, now=now))
            .update(
                status=Handoff.Status.ACTIVE,
                claimed_by=agent,
                # ``now`` was taken before this update may have waited on an expiry holding the row; a
                # claim that lands after a timeout must not be dated before it.
                claimed_at=Greatest(Value(now), Coalesce(F("timed_out_at"), Value(now))),
                last_message_at=None,  # the idle clock starts at the claim (idle.py: Coalesce with claimed_at)
                **cleared_offer(),
            )
        )
        if not won:
            # The losers of a claim storm: one read says who holds it (with the holder's name).
            handoff = Handoff.objects.select_related("claimed_by", "offered_to").get(pk=handoff.pk)
            if handoff.status == Handoff.Status.ACTIVE and handoff.claimed_by_id == agent.pk:
                return handoff
            if offer_blocks_claim(handoff=handoff, agent=agent, now=now):
                offered = agent_display_name(handoff.offered_to)
                raise Conflict(
                    "offered_to_other",
                    _("This conversation is being offered to %(name)s right now.") % {"name": offered},
                )
            if handoff.status in OPEN_STATUSES:  # an offer that started or ended during this claim
                raise Conflict("offer_changed", _("Who may claim this conversation just changed. Try again."))
            if handoff.status == Handoff.Status.ACTIVE:
                holder = agent_display_name(handoff.claimed_by)
                raise Conflict("already_claimed", _("Already claimed by %(name)s.") % {"name": holder})
            raise Conflict("handoff_resolved", _("This handoff is already resolved."))
        if not agent_can_act_locked(user_id=agent.pk, workspace_id=handoff.workspace_id):
            # Removed or deactivated while claiming: nothing is kept (the transaction rolls back).
            raise NotFound("handoff_not_found", _("No handoff for this conversation in your workspaces."))
        handoff.refresh_from_db()  # timed_out_at may have been set since it was read (a late claim)
        handoff.claimed_by = agent  # the row now says so; spares a query when the state is built
        conversation = conversation_lock(conversation_id=handoff.conversation_id)
        late = handoff.timed_out_at is not None
        name = agent_public_name(agent)  # the visitor reads this line
        event_append(
            conversation=conversation,
            kind="handoff.claimed",
            author=Event.Author.SYSTEM,
            text=f"{name} joined the conversation.",
            agent=agent,
            data={"late": late},
            notify_console=True,
        )
        outbox_handoff_event(EventType.HANDOFF_CLAIMED, conversation, handoff, late=late)
        announce_state(conversation=conversation, handoff=handoff)
    return handoff
