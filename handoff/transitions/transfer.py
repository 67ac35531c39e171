"""The claiming agent hands a live conversation to a named online colleague.

Active → pending with an offer to the colleague (``offers``): only they may claim it (accepting is
claiming), and if they decline or let ``PIVRA_TRANSFER_ACCEPT_SECONDS`` pass it goes back to everyone.
A colleague at their limit of live chats (``Membership.max_live_chats``) is not offered it: accepting
is a claim, which their limit would refuse.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from actions.events import EventType
from chatbots.models import Membership
from chatbots.presence import agents_with_capacity, member_at_capacity, online_agent_ids
from conversations.agent_names import agent_public_name
from conversations.models import Event
from conversations.services import conversation_lock, event_append
from handoff.models import Handoff
from handoff.state import agent_display_name
from handoff.transitions.offers import KIND_TRANSFER, handoff_offer_to_agent
from handoff.transitions.shared import agent_handoff, announce_state, cleared_offer, outbox_handoff_event
from handoff.transitions.timers import schedule_expiry
from pivra.errors import Conflict, DomainError, Forbidden, NotFound


def handoff_transfer(
    *, agent: User, conversation_public_id: str, to_user_id: int, now: datetime | None = None
) -> Handoff:
    """Offer the agent's live conversation to ``to_user_id`` (a member of its workspace, Online)."""
    now = now or timezone.now()
    handoff = agent_handoff(agent=agent, conversation_public_id=conversation_public_id)
    if handoff.status != Handoff.Status.ACTIVE or handoff.claimed_by_id != agent.pk:
        _refuse(handoff_id=handoff.pk, agent=agent)  # who may transfer, before anything about the target
    if to_user_id == agent.pk:
        raise DomainError("transfer_to_self", _("Choose a colleague: you already have this conversation."))
    target = _colleague(workspace_id=handoff.workspace_id, user_id=to_user_id)
    if target.pk not in online_agent_ids(workspace_id=handoff.workspace_id):
        raise Conflict(
            "agent_offline",
            _("%(name)s is not online. Choose an online colleague.") % {"name": agent_display_name(target)},
        )
    if member_at_capacity(user_id=target.pk, workspace_id=handoff.workspace_id):
        raise Conflict(
            "over_capacity",
            _("%(name)s is at their limit of live chats. Choose another colleague.")
            % {"name": agent_display_name(target)},
        )
    seconds = int(settings.TRANSFER_ACCEPT_SECONDS)
    with transaction.atomic():
        # The guarded update decides against a racing resolve, release, take-over or second transfer.
        # The deadline is past the offer's end: the visitor never sees Team busy while a colleague decides.
        deadline = now + timedelta(seconds=seconds + handoff.chatbot.handoff_timeout_seconds)
        won = Handoff.objects.filter(pk=handoff.pk, status=Handoff.Status.ACTIVE, claimed_by=agent).update(
            status=Handoff.Status.PENDING,
            claimed_by=None,
            claimed_at=None,
            last_message_at=None,
            # A Team busy before the claim is over: the colleague's accept is not a late claim.
            timed_out_at=None,
            busy_reason="",
            deadline_at=deadline,
            **cleared_offer(),
        )
        if not won:
            _refuse(handoff_id=handoff.pk, agent=agent)
        handoff.refresh_from_db()
        handoff_offer_to_agent(handoff=handoff, to=target, kind=KIND_TRANSFER, by=agent, seconds=seconds)
        conversation = conversation_lock(conversation_id=handoff.conversation_id)
        # The visitor reads this line: public names only (the console's side panel shows display names).
        event_append(
            conversation=conversation,
            kind="handoff.transferred",
            author=Event.Author.SYSTEM,
            text=f"{agent_public_name(agent)} transferred the conversation to {agent_public_name(target)}.",
            agent=agent,
            data={"to": agent_public_name(target)},
            notify_console=True,
        )
        outbox_handoff_event(
            EventType.HANDOFF_TRANSFERRED,
            conversation,
            handoff,
            take_over=False,
            from_agent={"id": agent.pk, "name": agent_display_name(agent)},
            to_agent={"id": target.pk, "name": agent_display_name(target)},
            accept_by=handoff.offer_expires_at.isoformat() if handoff.offer_expires_at else None,
        )
        announce_state(conversation=conversation, handoff=handoff)
        schedule_expiry(handoff, now=now)
    return handoff


def transfer_targets(*, agent: User, conversation_public_id: str) -> list[dict[str, Any]]:
    """The colleagues a conversation can go to now: Online members of its workspace under their limit
    of live chats, but the agent, by display name."""
    handoff = agent_handoff(agent=agent, conversation_public_id=conversation_public_id)
    free = set(agents_with_capacity(workspace_id=handoff.workspace_id)) - {agent.pk}
    users = User.objects.filter(pk__in=free, is_active=True, memberships__workspace_id=handoff.workspace_id).order_by(
        "first_name", "username"
    )
    rows = [{"id": user.pk, "name": agent_display_name(user) or ""} for user in users]
    return sorted(rows, key=lambda row: str(row["name"]).casefold())


def _colleague(*, workspace_id: int, user_id: int) -> User:
    """An active member of the workspace; anyone else is not found (other workspaces are never named)."""
    membership = (
        Membership.objects.select_related("user")
        .filter(workspace_id=workspace_id, user_id=user_id, user__is_active=True)
        .first()
    )
    if membership is None:
        raise NotFound("agent_not_found", _("No such colleague in this workspace."))
    return membership.user


def _refuse(*, handoff_id: int, agent: User) -> None:
    """Why the guarded update refused, as the error the agent reads."""
    handoff = Handoff.objects.select_related("claimed_by", "offered_to").get(pk=handoff_id)
    if handoff.status == Handoff.Status.RESOLVED:
        raise Conflict("handoff_resolved", _("This handoff is already resolved."))
    if handoff.status == Handoff.Status.ACTIVE:
        holder = agent_display_name(handoff.claimed_by) or _("another agent")
        raise Forbidden(
            "not_assignee", _("Only %(holder)s, who claimed this conversation, can transfer it.") % {"holder": holder}
        )
    if handoff.offer_kind == KIND_TRANSFER and handoff.offered_by_id == agent.pk:
        offered = agent_display_name(handoff.offered_to)
        raise Conflict(
            "transfer_pending", _("You already transferred this conversation to %(name)s.") % {"name": offered}
        )
    raise Conflict("not_claimed", _("Claim this conversation before transferring it."))
