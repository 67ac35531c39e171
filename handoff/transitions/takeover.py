"""An owner or admin takes over a live conversation held by someone else (or by nobody: an agent who
was deleted leaves ``claimed_by`` empty). The previous holder's consoles are told at once.

The role is read twice: before the transaction, for a quick refusal, and again after the guarded
update while holding the membership row (``member_role_locked``), so a demotion or removal committed in
between refuses the take-over, and one that comes later waits for it."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from actions.events import EventType
from chatbots.models import Membership
from conversations.agent_names import agent_public_name
from conversations.models import Event
from conversations.services import conversation_lock, event_append
from handoff.models import Handoff
from handoff.state import agent_display_name
from handoff.transitions.shared import (
    agent_handoff,
    announce_state,
    cleared_offer,
    member_role_locked,
    outbox_handoff_event,
)
from pivra.console.revocation import console_user_group
from pivra.errors import Conflict, Forbidden, NotFound
from pivra.realtime import send_on_commit

TAKEN_OVER_FRAME = "taken_over"
MANAGER_ROLES = (Membership.Role.OWNER, Membership.Role.ADMIN)


def handoff_take_over(*, agent: User, conversation_public_id: str, now: datetime | None = None) -> Handoff:
    """The live conversation becomes ``agent``'s; exactly one of racing take-overs, transfers,
    releases and resolves wins (the update is guarded on the holder read just before)."""
    now = now or timezone.now()
    handoff = agent_handoff(agent=agent, conversation_public_id=conversation_public_id)
    if not _is_manager(agent=agent, workspace_id=handoff.workspace_id):
        raise _not_admin()
    if handoff.status != Handoff.Status.ACTIVE:
        if handoff.status == Handoff.Status.RESOLVED:
            raise Conflict("handoff_resolved", _("This handoff is already resolved."))
        raise Conflict("not_live", _("Nobody is live in this conversation yet: claim it instead."))
    if handoff.claimed_by_id == agent.pk:
        raise Conflict("already_yours", _("You already have this conversation."))
    previous = handoff.claimed_by
    with transaction.atomic():
        holder = Q(claimed_by=previous) if previous is not None else Q(claimed_by__isnull=True)
        won = Handoff.objects.filter(holder, pk=handoff.pk, status=Handoff.Status.ACTIVE).update(
            claimed_by=agent, claimed_at=now, last_message_at=now, **cleared_offer()
        )
        if not won:
            raise Conflict("handoff_changed", _("This conversation changed hands just now. Reload and try again."))
        role = member_role_locked(user_id=agent.pk, workspace_id=handoff.workspace_id)
        if role is None:
            # Removed or deactivated while taking over (as in claim): the transaction rolls back, so the
            # chat stays with its holder and is not left live with someone who cannot act.
            raise NotFound("handoff_not_found", _("No handoff for this conversation in your workspaces."))
        if role not in MANAGER_ROLES:
            raise _not_admin()  # demoted since the first read: rolled back too
        handoff.refresh_from_db()
        handoff.claimed_by = agent
        conversation = conversation_lock(conversation_id=handoff.conversation_id)
        event_append(
            conversation=conversation,
            kind="handoff.taken_over",
            author=Event.Author.SYSTEM,
            text=f"{agent_public_name(agent)} took over the conversation.",
            agent=agent,
            data={"from": agent_public_name(previous) if previous is not None else None},
            notify_console=True,
        )
        outbox_handoff_event(
            EventType.HANDOFF_TRANSFERRED,
            conversation,
            handoff,
            take_over=True,
            from_agent=None if previous is None else {"id": previous.pk, "name": agent_display_name(previous)},
            to_agent={"id": agent.pk, "name": agent_display_name(agent)},
        )
        announce_state(conversation=conversation, handoff=handoff)
        if previous is not None:
            send_on_commit(
                [console_user_group(previous.pk)],
                {
                    "type": TAKEN_OVER_FRAME,
                    "conversation": str(conversation.public_id),
                    "by": agent_display_name(agent),
                    "url": f"/dashboard/conversations/{conversation.public_id}/",
                },
            )
    return handoff


def _is_manager(*, agent: User, workspace_id: int) -> bool:
    """The first, unlocked read of the role (re-checked under lock after the guarded update)."""
    role = Membership.objects.filter(user=agent, workspace_id=workspace_id).values_list("role", flat=True).first()
    return role in MANAGER_ROLES


def _not_admin() -> Forbidden:
    return Forbidden("not_admin", _("Only an owner or admin of the workspace can take over a conversation."))
