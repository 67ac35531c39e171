"""The assignee's replies in a live handoff: the chat's hot path, idempotent per client id."""

from __future__ import annotations

import uuid
from typing import Any

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from conversations.models import Conversation, Event
from conversations.services import Received, clean_message_text, event_append
from handoff.models import Handoff
from handoff.queries import reply_target
from handoff.state import agent_display_name
from pivra.errors import Conflict, Forbidden, NotFound
from pivra.ids import parse_uuid
from pivra.inputs import clean_client_id

# The database's guard against two events with one client id in a conversation (conversations.models).
CLIENT_ID_CONSTRAINT = "event_unique_client_id"


def handoff_reply(
    *, agent: User, conversation_public_id: str, text: str, client_id: str, data: dict[str, Any] | None = None
) -> Received:
    """Only the agent who claimed the conversation may reply; a resend with the same client id is stored once.
    ``data``: the event's data (an attachment's description, attachments/services.py)."""
    text = clean_message_text(text)
    client_id = clean_client_id(client_id, required=True) or ""
    key = parse_uuid(conversation_public_id)
    try:
        return _reply_locked(agent=agent, key=key, text=text, client_id=client_id, data=data)
    except IntegrityError as exc:
        # Two copies of one resend are serialised by the conversation lock, so the second finds the
        # first; should one still race past it, the database's constraint is the last word, and the
        # answer is the stored copy's, as for any resend — never a 500.
        if getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) != CLIENT_ID_CONSTRAINT or not key:
            raise
        existing = Event.objects.filter(conversation__public_id=key, client_id=client_id).first()
        if existing is None:
            raise
        return _resent(existing, agent=agent, text=text)


def _resent(existing: Event, *, agent: User, text: str) -> Received:
    if existing.text != text or existing.agent_id != agent.pk:
        raise Conflict("client_id_reused", _("This client_id was already used for a different message."))
    return Received(event=existing, duplicate=True)


def _reply_locked(
    *, agent: User, key: uuid.UUID | None, text: str, client_id: str, data: dict[str, Any] | None = None
) -> Received:
    with transaction.atomic():
        # The hot path of a live chat, so three statements: lock the conversation, then read its
        # handoff and a resend's stored event (``reply_target``), then the append (one round trip).
        target = reply_target(public_id=key, agent=agent, client_id=client_id) if key else None
        if target is None:
            raise NotFound("handoff_not_found", _("No handoff for this conversation in your workspaces."))
        conversation, status, claimed_by_id, existing_id = target
        if existing_id is not None:
            return _resent(Event.objects.get(pk=existing_id), agent=agent, text=text)
        if status == Handoff.Status.RESOLVED or conversation.status == Conversation.Status.CLOSED:
            # The code claim and resolve give for it too: "claim first" cannot help here.
            raise Conflict("handoff_resolved", _("This conversation is resolved: it takes no more replies."))
        if status != Handoff.Status.ACTIVE:
            raise Conflict("not_claimed", _("Claim this conversation before replying."))
        if claimed_by_id != agent.pk:
            holder = agent_display_name(User.objects.filter(pk=claimed_by_id or 0).first())
            raise Forbidden(
                "not_assignee", _("Only %(holder)s, who claimed this conversation, can reply.") % {"holder": holder}
            )
        event = event_append(
            conversation=conversation,
            kind="message",
            author=Event.Author.AGENT,
            text=text,
            agent=agent,
            client_id=client_id,
            data=data,
        )
    return Received(event=event, duplicate=False)
