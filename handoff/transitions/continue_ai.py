"""The visitor leaves the handoff for the AI: "Continue with AI" while the team is busy, and "Start
new conversation" (refused while an agent is live)."""

from __future__ import annotations

from django.db import transaction
from django.utils.translation import gettext as _

from conversations.models import Conversation, Event, Visitor
from conversations.services import (
    conversation_for_visitor,
    conversation_lock,
    conversation_start,
    event_append,
    event_by_client_id,
)
from handoff.models import Handoff
from handoff.state import conversation_state
from pivra.errors import Conflict
from pivra.realtime import send_on_commit, visitor_group


def handoff_continue_with_ai(
    *, visitor: Visitor, conversation_public_id: str, client_id: str | None = None
) -> Conversation:
    """Team busy → a fresh AI conversation at once; the handoff stays claimable, and a late claim
    brings the widget back to it. If an agent claimed it first, the visitor stays with the agent:
    the live conversation is returned and nothing switches."""
    target = conversation_for_visitor(visitor=visitor, public_id=conversation_public_id)
    with transaction.atomic():
        # The handoff row first (the lock order of claim): a claim that has already updated it makes
        # us wait for its commit and then see it active; one that comes later waits for ours. With a
        # plain read a claim could commit between our check and our commit, and the widget would hear
        # "● Live Agent" and then be switched away to a fresh AI chat.
        handoff = Handoff.objects.select_for_update().filter(conversation_id=target.pk).first()
        conversation = conversation_lock(conversation_id=target.pk)
        if handoff is not None and handoff.status == Handoff.Status.ACTIVE:
            return conversation
        if client_id and event_by_client_id(conversation=conversation, client_id=client_id) is not None:
            newer = Conversation.objects.filter(visitor=visitor, created_at__gt=conversation.created_at).first()
            if newer is not None:
                return newer
        if handoff is None or handoff.status != Handoff.Status.BUSY:
            raise Conflict("not_busy", _("Continuing with the AI is offered while the team is busy."))
        event_append(
            conversation=conversation,
            kind="conversation.continued",
            author=Event.Author.SYSTEM,
            text="The visitor continued with the AI while waiting.",
            client_id=client_id,
            notify_console=True,
        )
        fresh = conversation_start(visitor=visitor)
        send_on_commit([visitor_group(visitor.public_id)], {"type": "switch", "state": conversation_state(fresh)})
    return fresh


def conversation_start_new(*, visitor: Visitor) -> Conversation:
    """ "Start new conversation": a fresh AI conversation, unless an agent is live with the visitor."""
    if Handoff.objects.filter(conversation__visitor=visitor, status=Handoff.Status.ACTIVE).exists():
        raise Conflict("agent_live", _("A team member is with you in this conversation."))
    return conversation_start(visitor=visitor)
