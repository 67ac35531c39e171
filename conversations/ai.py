"""The AI's turn: stream a reply to the widget, then store it — unless a person was asked for meanwhile."""

from __future__ import annotations

import logging
import time
from typing import Literal

from django.db import transaction

from chatbots.responders import FRIENDLY_ERROR, ChatTurn, ResponderError, responder_for
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


def _history(conversation: Conversation, before_seq: int) -> list[ChatTurn]:
    rows = (
        Event.objects.filter(conversation=conversation, kind="message", seq__lt=before_seq)
        .order_by("-seq")
        .values_list("author", "text")[:HISTORY_TURNS]
    )
    roles: dict[str, Literal["visitor", "ai", "agent"]] = {"visitor": "visitor", "ai": "ai", "agent": "agent"}
    return [ChatTurn(role=roles[author], text=text) for author, text in reversed(rows) if author in roles]


def conversation_reply_with_ai(*, conversation_id: int, reply_to_seq: int) -> Event | None:
    """Answer the visitor message ``reply_to_seq``; returns the stored AI event, or None when silenced.

    No AI text is stored or sent once the conversation left ``open``: every token is published only
    after reading the handoff request's silence key (set on its commit, before its state frame); a
    token that still crosses that frame in flight is dropped by the widget's socket or stream; and
    the final write re-checks the status under the conversation's lock. A message is answered at
    most once: a redelivered task running beside the original finds the answer under that lock.
    """
    conversation = Conversation.objects.select_related("chatbot", "visitor").filter(pk=conversation_id).first()
    if conversation is None or conversation.status != Conversation.Status.OPEN:
        return None
    if _answered(conversation.pk, reply_to_seq):
        return None  # a redelivered task: this message was already answered
    question = Event.objects.filter(conversation=conversation, seq=reply_to_seq).values_list("text", flat=True).first()
    if question is None:
        return None
    groups = [visitor_group(conversation.visitor.public_id)]
    conversation_key = str(conversation.public_id)

    def typing(on: bool) -> dict[str, object]:
        return {"type": "typing", "conversation": conversation_key, "author": "ai", "on": on}

    send_now_rollback_unsafe(groups, typing(True))
    chunks: list[str] = []
    failed = False
    last_check = time.monotonic()
    try:
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
                groups, {"type": "ai.delta", "conversation": conversation_key, "reply_to": reply_to_seq, "text": chunk}
            )
    except ResponderError as exc:
        logger.warning("AI provider failed for conversation %s: %s", conversation_key, exc)
        failed = True
    except Exception:  # any bug in a responder still must not leave the visitor with a stuck typing indicator
        logger.exception("AI responder crashed for conversation %s", conversation_key)
        failed = True
    text = FRIENDLY_ERROR if failed or not "".join(chunks).strip() else "".join(chunks).strip()
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
