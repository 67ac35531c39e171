"""A step of the visitor-message pipeline (``settings.MESSAGE_PIPELINE``, first): a visitor message in
a conversation that is in handoff tells the agent who claimed it (if anyone has) after commit. It never
handles the message, so the steps after it run as before; it costs no query on the message's path —
who holds the chat is read by the task."""

from __future__ import annotations

from conversations.models import Conversation, Event
from notifications.services import notify_on_commit


def tell_live_agent(*, conversation: Conversation, event: Event) -> bool:
    if conversation.status == Conversation.Status.HANDOFF and event.author == Event.Author.VISITOR:
        notify_on_commit(kind="message", conversation_id=conversation.pk, ref_id=event.pk)
    return False
