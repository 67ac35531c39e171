"""AI replies run on the ``ai`` queue and its own worker; the unanswered sweep runs with the timers."""

from __future__ import annotations

import logging
from typing import Any

from celery import shared_task

from conversations.ai import AiBusy, conversation_reply_with_ai
from conversations.ai_sweep import ai_unanswered_requeue
from conversations.transcript_send import SENDING_SECONDS, StillSending, transcript_deliver
from conversations.transcript_smtp import smtp_code, smtp_transient

logger = logging.getLogger(__name__)


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


# A transcript the visitor or an agent asked for: a mail server that is briefly down delays it (with
# backoff), and the request id makes a redelivered task send it once (transcript_deliver). A
# permanent refusal (5xx, refused recipient, failed login) is logged by its code and not retried.
@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, ignore_result=True, max_retries=8)
def send_transcript(self: Any, conversation_id: int, email: str, request_id: str) -> bool:
    try:
        return transcript_deliver(conversation_id=conversation_id, email=email, request_id=request_id)
    except StillSending:
        raise self.retry(countdown=SENDING_SECONDS) from None
    except Exception as exc:
        if not smtp_transient(exc):
            logger.warning("transcript %s not sent: permanent failure %s", request_id, smtp_code(exc))
            return False
        countdown = min(120, 2 ** (self.request.retries + 1))
        raise self.retry(countdown=countdown, exc=exc) from None
