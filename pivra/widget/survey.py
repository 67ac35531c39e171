"""The resolved screen's two visitor operations, shared by the socket and the HTTP API (both thin):
answering "How did we do?" and asking for the transcript by email; and "End chat", which brings an
AI conversation to that screen."""

from __future__ import annotations

from typing import Any

from django.core.cache import cache
from django.utils.translation import gettext as _

from conversations.models import Conversation, Visitor
from conversations.services import conversation_for_visitor
from conversations.transcript_send import clean_transcript_email, transcript_request
from handoff.models import Handoff
from handoff.ratings import conversation_rate
from handoff.state import conversation_state
from handoff.transitions.end_chat import conversation_end_by_visitor
from pivra.errors import Conflict, NotFound
from pivra.inputs import clean_client_id
from pivra.widget.ratelimit import visitor_action_limits

# How long a transcript request's client id is remembered (resends come within seconds).
RESEND_MEMORY_SECONDS = 86_400
_PENDING = ""  # the client id's request is being handled right now


def _target(visitor: Visitor, conversation: str | None) -> Conversation:
    """The visitor's own conversation named by the client (the one on its resolved screen), else the
    current one (a live one first, else the newest). Never creates one: a rating or a transcript is
    about a conversation that exists."""
    if conversation:
        return conversation_for_visitor(visitor=visitor, public_id=conversation)
    mine = Conversation.objects.select_related("chatbot").filter(visitor=visitor)
    found = (
        mine.filter(handoff__status=Handoff.Status.ACTIVE).order_by("-handoff__claimed_at").first()
        or mine.order_by("-created_at").first()
    )
    if found is None:
        raise NotFound("conversation_not_found", _("This conversation does not exist for this visitor."))
    return found


def widget_rate(
    *,
    visitor: Visitor,
    client_id: str | None,
    score: int,
    comment: str = "",
    conversation: str | None = None,
    ip: str | None = None,
) -> dict[str, Any]:
    """Rate the resolved conversation (once; see ``handoff.ratings.conversation_rate``)."""
    client_id = clean_client_id(client_id, required=False)
    visitor_action_limits(visitor_key=str(visitor.public_id), ip=ip)  # before any query
    target = _target(visitor, conversation)
    event = conversation_rate(conversation=target, score=score, comment=comment, client_id=client_id)
    target.refresh_from_db()
    return {"client_id": client_id, "seq": event.seq, "state": conversation_state(target)}


def widget_end_chat(
    *, visitor: Visitor, client_id: str | None, conversation: str | None = None, ip: str | None = None
) -> dict[str, Any]:
    """ "End chat" in an AI conversation: closed, with the resolved screen (``handoff.transitions.end_chat``)."""
    client_id = clean_client_id(client_id, required=False)
    visitor_action_limits(visitor_key=str(visitor.public_id), ip=ip)  # before any query
    target = _target(visitor, conversation)
    ended, event = conversation_end_by_visitor(
        visitor=visitor, conversation_public_id=str(target.public_id), client_id=client_id
    )
    return {"client_id": client_id, "seq": event.seq, "state": conversation_state(ended)}


def widget_transcript(
    *, visitor: Visitor, client_id: str | None, email: str, conversation: str | None = None, ip: str | None = None
) -> dict[str, Any]:
    """Email the resolved conversation's transcript to the visitor's address (one-off, rate-limited)."""
    client_id = clean_client_id(client_id, required=False)
    clean_transcript_email(email)  # the same check on the socket and HTTP paths, before anything else
    visitor_action_limits(visitor_key=str(visitor.public_id), ip=ip)  # before any query
    # The widget resends an unacknowledged action after a reconnect: the same client id sends no
    # second email (and costs no budget). The pending mark makes two concurrent resends one send.
    memory = f"widget:transcript:{visitor.public_id}:{client_id}" if client_id else None
    if memory and not cache.add(memory, _PENDING, timeout=RESEND_MEMORY_SECONDS):
        queued = cache.get(memory)
        if queued == _PENDING:
            raise Conflict("transcript_pending", _("Your transcript request is still being handled."))
        if queued is not None:
            return {"client_id": client_id, "email": queued}
        cache.add(memory, _PENDING, timeout=RESEND_MEMORY_SECONDS)  # expired in between
    try:
        target = _target(visitor, conversation)
        address = transcript_request(
            conversation=target, email=email, by="visitor", visitor_key=str(visitor.public_id), ip=ip
        )
    except BaseException:
        if memory:
            cache.delete(memory)  # refused: a resend may try again
        raise
    if memory:
        cache.set(memory, address, timeout=RESEND_MEMORY_SECONDS)
    return {"client_id": client_id, "email": address}
