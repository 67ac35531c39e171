"""AI replies run on the ``ai`` queue and its own worker; the unanswered sweep runs with the timers."""

from __future__ import annotations

from typing import Any

from celery import shared_task

from conversations.ai import AiBusy, conversation_reply_with_ai
from conversations.ai_sweep import ai_unanswered_requeue


# A reply whose chatbot or workspace is at its cap waits in the broker (a retry with a countdown),
# not in a worker thread: the thread goes on to answer someone else's visitor meanwhile.
@shared_task(bind=True, acks_late=True, ignore_result=True, max_retries=None)
def generate_ai_reply(self: Any, conversation_id: int, reply_to_seq: int) -> None:
    try:
        conversation_reply_with_ai(conversation_id=conversation_id, reply_to_seq=reply_to_seq)
    except AiBusy as busy:
        raise self.retry(countdown=busy.retry_in) from None


@shared_task(ignore_result=True)
def sweep_unanswered_messages() -> int:
    return ai_unanswered_requeue()
