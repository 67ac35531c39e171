"""Resolve: the one closing transition, for an agent's Resolve and for a newer request superseding an
older one. The conversation closes with its thread whole."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from django.utils.translation import gettext as _

from actions.events import EventType
from conversations.models import Conversation, Event
from conversations.services import conversation_lock, event_append
from handoff.models import Handoff
from handoff.state import agent_display_name
from handoff.transitions.shared import OPEN_STATUSES, agent_handoff, announce_state, outbox_handoff_event
from pivra.errors import Conflict, Forbidden


def handoff_resolve(*, agent: User, conversation_public_id: str, now: datetime | None = None) -> Handoff:
    """Close the conversation with its thread whole. An active handoff is resolved by its assignee;
    an unclaimed one by anyone in the workspace."""
    now = now or timezone.now()
    handoff = agent_handoff(agent=agent, conversation_public_id=conversation_public_id)
    with transaction.atomic():
        won = resolve_transition(
            handoff=handoff,
            guard=Q(status=Handoff.Status.ACTIVE, claimed_by=agent) | Q(status__in=OPEN_STATUSES),
            now=now,
            agent=agent,
            text="Conversation resolved ✓",
        )
        if not won:
            if handoff.status == Handoff.Status.RESOLVED:
                raise Conflict("handoff_resolved", _("This handoff is already resolved."))
            holder = agent_display_name(handoff.claimed_by)
            raise Forbidden(
                "not_assignee",
                _("Only %(holder)s, who claimed this conversation, can resolve it.") % {"holder": holder},
            )
    return handoff


def resolve_transition(
    *, handoff: Handoff, guard: Q, now: datetime, agent: User | None, text: str, reason: str | None = None
) -> bool:
    """The one resolve transition (an agent's Resolve, a newer request superseding an old one, the
    idle sweep): a guarded update, then the closed conversation, its event, the outbox row and the
    broadcasts. ``reason`` (None: an agent's Resolve, stored as "agent") goes to
    ``Handoff.resolve_reason``, and to the event and the payload when given.
    Runs inside the caller's transaction; False, with ``handoff`` refreshed, when the guard refused."""
    won = (
        Handoff.objects.filter(pk=handoff.pk)
        .filter(guard)
        .update(status=Handoff.Status.RESOLVED, resolved_at=now, resolved_by=agent, resolve_reason=reason or "agent")
    )
    handoff.refresh_from_db()
    if not won:
        return False
    conversation = conversation_lock(conversation_id=handoff.conversation_id)
    Conversation.objects.filter(pk=conversation.pk).update(status=Conversation.Status.CLOSED, closed_at=now)
    conversation.status, conversation.closed_at = Conversation.Status.CLOSED, now
    extra = {"reason": reason} if reason else {}
    event_append(
        conversation=conversation,
        kind="handoff.resolved",
        author=Event.Author.SYSTEM,
        text=text,
        agent=agent,
        data=extra,
        notify_console=True,
    )
    outbox_handoff_event(EventType.HANDOFF_RESOLVED, conversation, handoff, **extra)
    announce_state(conversation=conversation, handoff=handoff)
    return True
