"""The AI's turn: stream a reply to the widget, then store it — unless a person was asked for meanwhile."""

from __future__ import annotations

import logging
import secrets
import time
from typing import Any, Literal, NoReturn

import redis
from django.conf import settings
from django.db import transaction
from django.utils import translation

from chatbots.responders import FRIENDLY_ERROR, ChatTurn, ResponderError, in_language, responder_for
from conversations.ai_slots import (
    ai_leases_kept,
    ai_reply_lock,
    ai_reply_mark_queued,
    ai_reply_unlock,
    ai_reply_unmark_queued,
    ai_slot_acquire,
    ai_slot_release,
)
from conversations.models import Conversation, Event
from conversations.services import conversation_lock, event_append
from pivra.realtime import ai_silenced, send_now_rollback_unsafe, send_on_commit, visitor_group

logger = logging.getLogger(__name__)

HISTORY_TURNS = 20
# How often a streaming reply also re-reads the conversation's status: a backstop for the silence
# key (pivra.realtime.ai_silenced), which is read before every token but lives in Redis.
STATUS_CHECK_SECONDS = 0.25


def _still_open(conversation_id: int) -> bool:
    return Conversation.objects.filter(pk=conversation_id, status=Conversation.Status.OPEN).exists()


def _answered(conversation_id: int, reply_to_seq: int) -> bool:
    return Event.objects.filter(
        conversation_id=conversation_id, author=Event.Author.AI, data__reply_to=reply_to_seq
    ).exists()


def _superseded(conversation_id: int, reply_to_seq: int) -> bool:
    """A later visitor message already has its AI reply: answering this one now would come out of
    turn (a copy delayed by an outage, or one that waited behind the AI caps while the visitor went
    on), and that later reply was written with this message in its history."""
    return Event.objects.filter(
        conversation_id=conversation_id, author=Event.Author.AI, kind="message", data__reply_to__gt=reply_to_seq
    ).exists()


def _history(conversation: Conversation, before_seq: int) -> list[ChatTurn]:
    rows = (
        Event.objects.filter(conversation=conversation, kind="message", seq__lt=before_seq)
        .order_by("-seq")
        .values_list("author", "text", "data")[:HISTORY_TURNS]
    )
    roles: dict[str, Literal["visitor", "ai", "agent"]] = {"visitor": "visitor", "ai": "ai", "agent": "agent"}
    return [
        ChatTurn(role=roles[author], text=_turn_text(text, data))
        for author, text, data in reversed(rows)
        if author in roles
    ]


def _turn_text(text: str, data: dict[str, Any]) -> str:
    """An attachment's message (its text is the file name) reads as what it is; the AI sees no file."""
    attachment = data.get("attachment") if isinstance(data, dict) else None
    if isinstance(attachment, dict):
        what = "an image" if str(attachment.get("content_type", "")).startswith("image/") else "a PDF file"
        return f"[attached {what}: {text}]"
    return text


class AiBusy(Exception):
    """Every AI slot of the chatbot or of its workspace is taken: ask again in ``retry_in`` seconds."""

    def __init__(self, retry_in: float) -> None:
        super().__init__(f"AI slots taken; retry in {retry_in:.1f} s")
        self.retry_in = retry_in


# A deferred reply asks for a slot again after this long (jittered, so waiting replies spread out).
RETRY_SECONDS = (1.0, 2.0)
_random = secrets.SystemRandom()


def _typing(conversation: Conversation, on: bool) -> dict[str, Any]:
    return {"type": "typing", "conversation": str(conversation.public_id), "author": "ai", "on": on}


def conversation_reply_with_ai(*, conversation_id: int, reply_to_seq: int) -> Event | None:
    """Answer the visitor message ``reply_to_seq``; returns the stored AI event, or None when silenced.

    No AI text is stored or sent once the conversation left ``open``: every token is published only
    after reading the handoff request's silence key (set on its commit, before its state frame); a
    token that still crosses that frame in flight is dropped by the widget's socket or stream; and
    the final write re-checks the status under the conversation's lock. A message is answered at
    most once: a twin (redelivered, or queued again by the unanswered sweep) that finds the reply
    lock held returns without calling the LLM, and one that runs after the lock expired finds the
    answer under the row lock. Raises AiBusy, with the visitor shown the typing indicator, when
    the chatbot or its workspace already has as many AI calls running as its cap allows.
    """
    conversation = Conversation.objects.select_related("chatbot", "visitor").filter(pk=conversation_id).first()
    if conversation is None or conversation.status != Conversation.Status.OPEN:
        return None
    if _answered(conversation.pk, reply_to_seq):
        return None  # a redelivered task: this message was already answered
    question = Event.objects.filter(conversation=conversation, seq=reply_to_seq).values_list("text", flat=True).first()
    if question is None:
        return None
    lock = ai_reply_lock(conversation_id=conversation.pk, reply_to_seq=reply_to_seq)
    if lock is None:
        return None  # a twin is answering this message right now
    try:
        if _answered(conversation.pk, reply_to_seq):
            return None  # a twin stored the answer and let go of the lock since the first check
        if _superseded(conversation.pk, reply_to_seq):
            return None  # the AI already answered a later message (its history held this one)
        # Out of the queue and under a renewed lock: a worker killed from here on frees the message
        # for the unanswered sweep within one lease (not the queued marker's much longer one).
        ai_reply_unmark_queued(conversation_id=conversation.pk, reply_to_seq=reply_to_seq)
        slot = ai_slot_acquire(chatbot_id=conversation.chatbot_id, workspace_id=conversation.chatbot.workspace_id)
        if slot is None:
            _defer(conversation, reply_to_seq)
        try:
            with ai_leases_kept(lock=lock, slot=slot):
                return _stream_and_store(conversation, reply_to_seq, question)
        finally:
            ai_slot_release(slot)
    finally:
        ai_reply_unlock(lock)


def _defer(conversation: Conversation, reply_to_seq: int) -> NoReturn:
    """The visitor sees the bot typing while the reply waits for a slot; the unanswered sweep
    leaves a waiting reply alone (it is queued)."""
    send_now_rollback_unsafe([visitor_group(conversation.visitor.public_id)], _typing(conversation, True))
    try:
        ai_reply_mark_queued(conversation_id=conversation.pk, reply_to_seq=reply_to_seq, only_if_new=False)
    except redis.RedisError:
        pass  # no Redis, no slots either: the next try goes ahead without a cap
    raise AiBusy(_random.uniform(*RETRY_SECONDS))


def _stream_and_store(conversation: Conversation, reply_to_seq: int, question: str) -> Event | None:
    groups = [visitor_group(conversation.visitor.public_id)]
    conversation_key = str(conversation.public_id)

    def typing(on: bool) -> dict[str, Any]:
        return _typing(conversation, on)

    send_now_rollback_unsafe(groups, typing(True))
    chunks: list[str] = []
    failed = False
    last_check = time.monotonic()
    try:
        # Pivra's own words a responder yields (an untouched default fallback) in the conversation's language.
        with translation.override(conversation.language or settings.LANGUAGE_CODE):
            for chunk in responder_for(conversation.chatbot).stream(
                question=question, history=_history(conversation, reply_to_seq)
            ):
                if ai_silenced(conversation_id=conversation.pk):
                    break
                if time.monotonic() - last_check >= STATUS_CHECK_SECONDS:
                    last_check = time.monotonic()
                    if not _still_open(conversation.pk):
                        break
                chunks.append(chunk)
                send_now_rollback_unsafe(
                    groups,
                    {"type": "ai.delta", "conversation": conversation_key, "reply_to": reply_to_seq, "text": chunk},
                )
    except ResponderError as exc:
        logger.warning("AI provider failed for conversation %s: %s", conversation_key, exc)
        failed = True
    except Exception:  # any bug in a responder still must not leave the visitor with a stuck typing indicator
        logger.exception("AI responder crashed for conversation %s", conversation_key)
        failed = True
    if failed or not "".join(chunks).strip():
        text = in_language(FRIENDLY_ERROR, conversation.language)  # Pivra's words: the conversation's language
    else:
        text = "".join(chunks).strip()
    with transaction.atomic():
        locked = conversation_lock(conversation_id=conversation.pk)
        # Both checks again, under the lock: a handoff request or a twin task may have committed
        # while this reply was being generated.
        if locked.status != Conversation.Status.OPEN or _answered(locked.pk, reply_to_seq):
            send_on_commit(groups, typing(False))
            return None
        event = event_append(
            conversation=locked,
            kind="message",
            author=Event.Author.AI,
            text=text,
            data={"reply_to": reply_to_seq, **({"error": True} if failed else {})},
        )
        send_on_commit(groups, typing(False))
    return event
