"""The last step of the message pipeline: the AI answers."""

from __future__ import annotations

from django.db import transaction

from conversations.models import Conversation, Event


def reply_with_ai(*, conversation: Conversation, event: Event) -> bool:
    """Queue the AI's answer once the visitor's message is committed."""
    from conversations.tasks import generate_ai_reply

    conversation_id, seq = conversation.pk, event.seq
    transaction.on_commit(lambda: generate_ai_reply.delay(conversation_id, seq))
    return True
