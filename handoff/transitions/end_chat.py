"""The visitor's "End chat" in a conversation with the AI: it closes like a resolved one (the resolved
screen, "How did we do?", the transcript), so a conversation the AI handled alone can be rated too.
A conversation with a handoff is the team's to close (handoff.transitions.resolve)."""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone
from django.utils.translation import gettext as _

from conversations.models import Conversation, Event, Visitor
from conversations.services import conversation_for_visitor, conversation_lock, event_append, event_by_client_id
from handoff.models import Handoff
from handoff.transitions.shared import announce_state
from pivra.errors import Conflict

ENDED_TEXT = "The visitor ended the chat"


def conversation_end_by_visitor(
    *, visitor: Visitor, conversation_public_id: str, client_id: str | None = None
) -> tuple[Conversation, Event]:
    """Close the visitor's AI conversation with a ``conversation.ended`` event; a resend with the same
    client id returns that event. Refused: 409 ``handoff_open`` once a person was asked for, 409
    ``nothing_to_end`` before the visitor wrote anything, 409 ``not_open`` when already closed."""
    target = conversation_for_visitor(visitor=visitor, public_id=conversation_public_id)
    with transaction.atomic():
        # The handoff row first: the lock order of every handoff transition (a request racing us).
        handoff = Handoff.objects.select_for_update().filter(conversation_id=target.pk).first()
        conversation = conversation_lock(conversation_id=target.pk)
        if client_id:
            earlier = event_by_client_id(conversation=conversation, client_id=client_id)
            if earlier is not None:
                if earlier.kind != "conversation.ended":
                    raise Conflict("client_id_reused", _("This client_id was already used for a different action."))
                return conversation, earlier
        if handoff is not None:
            raise Conflict("handoff_open", _("A team member is handling this conversation: they will close it."))
        if conversation.status == Conversation.Status.CLOSED:
            raise Conflict("not_open", _("This conversation is already closed."))
        if not Event.objects.filter(conversation_id=conversation.pk, author=Event.Author.VISITOR).exists():
            raise Conflict("nothing_to_end", _("There is nothing to end yet."))
        now = timezone.now()
        Conversation.objects.filter(pk=conversation.pk).update(status=Conversation.Status.CLOSED, closed_at=now)
        conversation.status, conversation.closed_at = Conversation.Status.CLOSED, now
        event = event_append(
            conversation=conversation,
            kind="conversation.ended",
            author=Event.Author.SYSTEM,
            text=ENDED_TEXT,
            client_id=client_id,
            notify_console=True,
        )
        announce_state(conversation=conversation, handoff=None)
    return conversation, event
