"""What every handoff transition shares: the open statuses, whether handoff is offered at all, the
after-commit state announcement, the outbox row of a transition, and the agent-side lookup of a handoff
(the one guard that keeps an agent inside their own workspaces)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User
from django.db import connection
from django.utils.translation import gettext as _

from actions.events import EventType
from actions.outbox import outbox_write
from chatbots.features import workspace_has_feature
from chatbots.models import Chatbot, Membership
from chatbots.plans import Feature
from conversations.models import Conversation
from handoff.models import Handoff
from handoff.payloads import event_data
from handoff.queue_position import queue_positions_announce_on_commit
from handoff.state import state_snapshot
from pivra.console.revocation import console_user_group
from pivra.errors import NotFound
from pivra.ids import parse_uuid
from pivra.queries import unique_row
from pivra.realtime import console_group, send_on_commit, send_state_on_commit, visitor_group

OPEN_STATUSES = (Handoff.Status.PENDING, Handoff.Status.BUSY)
# The frame that takes an offer's notice off the offered agent's consoles (``offers``).
OFFER_ENDED_FRAME = "offer.ended"


def handoff_available(*, chatbot: Chatbot) -> bool:
    """Handoff is offered when the chatbot enables it and the workspace's plan includes it."""
    return chatbot.handoff_enabled and workspace_has_feature(workspace=chatbot.workspace, feature=Feature.HANDOFF)


def announce_state(*, conversation: Conversation, handoff: Handoff | None) -> None:
    """After commit: the widget's new state and the console's queue change."""
    send_state_on_commit(
        [visitor_group(conversation.visitor.public_id)],
        {"type": "state", "state": state_snapshot(conversation=conversation, handoff=handoff)},
        conversation_id=conversation.pk,
        seq=conversation.last_seq,
    )
    if handoff is not None:
        workspace_id = handoff.workspace_id
        unclaimed = Handoff.objects.filter(workspace_id=workspace_id, status__in=OPEN_STATUSES).count()
        send_on_commit(
            [console_group(workspace_id)],
            {
                "type": "queue",
                "conversation": str(conversation.public_id),
                "status": handoff.status,
                "unclaimed": unclaimed,
            },
        )
        # The visitors still waiting whose place in line moved hear it (one query, after commit).
        queue_positions_announce_on_commit(workspace_id=workspace_id)


def cleared_offer() -> dict[str, Any]:
    """The update that ends an offer (``offers``): a claim, a take-over, a transfer, a requeue, an expiry."""
    return {"offered_to": None, "offered_by": None, "offer_kind": "", "offer_expires_at": None}


def offer_ended_on_commit(*, agent_id: int, conversation: Conversation, reason: str) -> None:
    """After commit: the offered agent's consoles drop the offer's notice (it ended without their claim)."""
    send_on_commit(
        [console_user_group(agent_id)],
        {"type": OFFER_ENDED_FRAME, "conversation": str(conversation.public_id), "reason": reason},
    )


def outbox_handoff_event(
    event_type: EventType, conversation: Conversation, handoff: Handoff | None, **extra: Any
) -> None:
    """Write a handoff's outbox event (Actions and webhooks) in the current transaction."""
    data = event_data(conversation=conversation, handoff=handoff)
    data.update(extra)
    outbox_write(
        event_type=event_type,
        workspace_id=conversation.chatbot.workspace_id,
        chatbot_id=conversation.chatbot_id,
        data=data,
    )


def agent_handoff(*, agent: User, conversation_public_id: str) -> Handoff:
    """The handoff of a conversation in one of the agent's workspaces; anything else is not found."""
    workspace_ids = Membership.objects.filter(user=agent).values_list("workspace_id", flat=True)
    key = parse_uuid(conversation_public_id)
    handoff = (
        unique_row(
            Handoff.objects.select_related("claimed_by").filter(
                conversation__public_id=key, workspace_id__in=workspace_ids
            )
        )
        if key
        else None
    )
    if handoff is None:
        raise NotFound("handoff_not_found", _("No handoff for this conversation in your workspaces."))
    return handoff


def agent_can_act_locked(*, user_id: int, workspace_id: int) -> bool:
    """Whether the user is an active member of the workspace, holding their membership and user rows
    (FOR SHARE) until the transaction ends. A transition that gives a handoff to someone (claim,
    take-over) calls it after its guarded update: a removal or deactivation that commits first makes
    it refuse; one that comes later waits for it, and then finds the handoff and returns it to the
    queue (``handoff.departures.handoffs_requeue_for_member``). So no active handoff is left with an
    agent who cannot act."""
    return member_role_locked(user_id=user_id, workspace_id=workspace_id) is not None


def member_role_locked(*, user_id: int, workspace_id: int) -> str | None:
    """The role of an active member of the workspace (None for anyone else), holding the membership and
    user rows FOR SHARE as ``agent_can_act_locked`` does: a role change committed before is seen, one
    that comes later waits for this transaction (a take-over checks the owner/admin role with it)."""
    member = Membership._meta.db_table
    user = User._meta.db_table
    lock = " FOR SHARE" if connection.vendor == "postgresql" else ""
    with connection.cursor() as cursor:
        cursor.execute(
            f"SELECT m.role FROM {member} m JOIN {user} u ON u.id = m.user_id"  # table names, not input
            f" WHERE m.user_id = %s AND m.workspace_id = %s AND u.is_active{lock}",
            [user_id, workspace_id],
        )
        row = cursor.fetchone()
    return None if row is None else str(row[0])
