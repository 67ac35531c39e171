"""The last step of the message pipeline: the AI answers."""

from __future__ import annotations

import logging

from django.db import transaction

from conversations.models import Conversation, Event
from pivra.unavailable import is_unavailable, log_unavailable

logger = logging.getLogger(__name__)

# Set on a visitor message the pipeline handed to the AI. The unanswered sweep (ai_sweep.py) answers
# only these: a message silenced by a handoff or answered by the keyword offer never gets an AI reply.
ROUTED_TO_AI = "to_ai"


def reply_with_ai(*, conversation: Conversation, event: Event) -> bool:
    """Mark the message as the AI's to answer and queue the answer once it is committed."""
    Event.objects.filter(pk=event.pk).update(data={**event.data, ROUTED_TO_AI: True})
    ai_reply_enqueue_on_commit(conversation_id=conversation.pk, reply_to_seq=event.seq)
    return True


def ai_reply_enqueue_on_commit(*, conversation_id: int, reply_to_seq: int) -> None:
    """A broker out of reach must not fail the committed request: the message stays stored, the
    error is logged, and the unanswered sweep queues the reply once the broker is back."""

    def queue_generate_ai_reply() -> None:
        from conversations.ai_slots import ai_reply_mark_queued, ai_reply_unmark_queued
        from conversations.tasks import generate_ai_reply

        try:
            # Waiting in the queue (a backlog behind the AI caps) is not lost: the sweep leaves it.
            ai_reply_mark_queued(conversation_id=conversation_id, reply_to_seq=reply_to_seq, only_if_new=False)
            generate_ai_reply.delay(conversation_id, reply_to_seq)
        except Exception as exc:  # kombu / redis errors of every kind; the sweep covers for them
            if is_unavailable(exc):
                log_unavailable("AI reply enqueue", exc)  # one line per outage, not a traceback per message
            else:
                logger.exception(
                    "could not queue the AI reply to message %s of conversation %s", reply_to_seq, conversation_id
                )
            ai_reply_unmark_queued(conversation_id=conversation_id, reply_to_seq=reply_to_seq)

    transaction.on_commit(queue_generate_ai_reply, robust=True)
