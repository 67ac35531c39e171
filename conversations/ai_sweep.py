"""The unanswered sweep: a visitor message the AI should have answered, and whose task was lost.

A message is handed to the AI on commit (conversations/pipeline.py); if the broker was out of
reach then, or the queued task was lost with Redis, nothing else would ever answer it. The beat
runs this every few seconds (on the timers' queue: it is one indexed query) and queues the reply
again for each visitor message that

- the pipeline routed to the AI (``data.to_ai``: not one silenced by a handoff or answered by the
  keyword offer), in a conversation still with the AI (``open``);
- is the visitor's latest message there (a reply to an older one would come out of turn);
- has no AI reply (no AI event with ``data.reply_to`` = its seq);
- was stored more than the grace period ago (longer than a reply normally waits in the queue) and
  within the look-back window;
- is not being answered right now (no reply lock, renewed while a reply runs), and is not waiting
  in the queue (the queued marker, set when the pipeline or this sweep queues it and cleared when a
  worker starts on it): each message is queued at most once per marker lifetime.

The reply lock and the final check under the conversation's row lock make any copy that still
races the original a no-op, so the message gets exactly one AI reply.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

import redis
from django.conf import settings
from django.db.models import CharField, Exists, OuterRef
from django.db.models.fields.json import KeyTextTransform
from django.db.models.functions import Cast
from django.utils import timezone

from conversations.ai_slots import ai_reply_locked, ai_reply_mark_queued, ai_reply_unmark_queued
from conversations.models import Conversation, Event
from conversations.pipeline import ROUTED_TO_AI

logger = logging.getLogger(__name__)

SWEEP_LIMIT = 200  # queued per run; the next run (seconds later) takes the rest
# Rows looked at per run: messages already queued or being answered (one tenant's backlog behind its
# AI cap) are skipped, and must not hide another tenant's lost message behind them.
SCAN_PAGES = 10


def _unanswered_page(*, now: datetime, after_pk: int, limit: int) -> list[tuple[int, int, int]]:
    """(event pk, conversation id, seq) of unanswered messages after ``after_pk``, oldest first."""
    answers = Event.objects.annotate(reply_to=KeyTextTransform("reply_to", "data")).filter(
        conversation_id=OuterRef("conversation_id"),
        author=Event.Author.AI,
        reply_to=Cast(OuterRef("seq"), CharField()),
    )
    later = Event.objects.filter(
        conversation_id=OuterRef("conversation_id"),
        author=Event.Author.VISITOR,
        kind="message",
        seq__gt=OuterRef("seq"),
    )
    rows = (
        Event.objects.filter(
            pk__gt=after_pk,
            author=Event.Author.VISITOR,
            kind="message",
            created_at__gte=now - timedelta(minutes=settings.AI_UNANSWERED_LOOKBACK_MINUTES),
            created_at__lte=now - timedelta(seconds=settings.AI_UNANSWERED_GRACE_SECONDS),
            conversation__status=Conversation.Status.OPEN,
            **{f"data__{ROUTED_TO_AI}": True},
        )
        .exclude(Exists(answers))
        .exclude(Exists(later))
        .order_by("pk")
        .values_list("pk", "conversation_id", "seq")[:limit]
    )
    return list(rows)


def ai_unanswered(*, now: datetime | None = None, limit: int = SWEEP_LIMIT) -> list[tuple[int, int]]:
    """(conversation id, seq) of the visitor messages left without their AI reply, oldest first."""
    page = _unanswered_page(now=now or timezone.now(), after_pk=0, limit=limit)
    return [(conversation_id, seq) for _, conversation_id, seq in page]


def ai_unanswered_requeue(*, now: datetime | None = None) -> int:
    """Queue the AI reply of every unanswered message (see the module docstring); returns how many."""
    from conversations.tasks import generate_ai_reply

    now = now or timezone.now()
    queued, after_pk = 0, 0
    for _ in range(SCAN_PAGES):
        page = _unanswered_page(now=now, after_pk=after_pk, limit=SWEEP_LIMIT)
        for pk, conversation_id, seq in page:
            after_pk = pk
            try:
                if ai_reply_locked(conversation_id=conversation_id, reply_to_seq=seq):
                    continue
                if not ai_reply_mark_queued(conversation_id=conversation_id, reply_to_seq=seq, only_if_new=True):
                    continue
            except redis.RedisError:
                logger.warning("unanswered sweep: Redis out of reach; trying again on the next run", exc_info=True)
                return queued
            try:
                generate_ai_reply.delay(conversation_id, seq)
            except Exception:  # the broker is out of reach: forget the marker so the next run tries again
                logger.exception("unanswered sweep: could not queue the AI reply to %s/%s", conversation_id, seq)
                ai_reply_unmark_queued(conversation_id=conversation_id, reply_to_seq=seq)
                return queued
            logger.info("unanswered sweep: queued the AI reply to message %s of conversation %s", seq, conversation_id)
            queued += 1
            if queued >= SWEEP_LIMIT:
                return queued
        if len(page) < SWEEP_LIMIT:
            break
    return queued
