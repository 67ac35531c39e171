"""Realtime groups and broadcasts. Every broadcast is sent only after the transaction commits."""

from __future__ import annotations

import asyncio
import logging
import os
import threading
from collections.abc import Iterable
from typing import Any

import redis
from channels.layers import BaseChannelLayer, get_channel_layer
from django.conf import settings
from django.db import transaction

from pivra.redis_client import shared_redis
from pivra.unavailable import is_unavailable, log_unavailable

logger = logging.getLogger(__name__)

# Channel-layer message type; consumers implement a handler named ``pivra_event``.
EVENT_TYPE = "pivra.event"


def conversation_group(conversation_id: object) -> str:
    """Agents looking at one conversation."""
    return f"conv.{conversation_id}"


def visitor_group(visitor_id: object) -> str:
    """Every widget socket of one visitor: it hears about all of the visitor's conversations, so a
    late claim of an older conversation reaches the widget wherever the visitor is."""
    return f"visitor.{visitor_id}"


def console_group(workspace_id: object) -> str:
    """Every console socket of one workspace: queue changes and the unclaimed count."""
    return f"console.{workspace_id}"


def send_now_rollback_unsafe(groups: Iterable[str], frame: dict[str, Any]) -> bool:
    """Send immediately. Only for frames that describe no stored state (typing, AI token deltas).
    True when every group got it."""
    layer = get_channel_layer()
    targets = list(groups)
    if layer is None or not targets:
        return layer is not None
    message = {"type": EVENT_TYPE, "frame": frame}
    future = asyncio.run_coroutine_threadsafe(_send_all(layer, targets, message), _publisher_loop())
    try:
        return future.result(timeout=PUBLISH_TIMEOUT)
    except TimeoutError:
        future.cancel()
        logger.error("broadcast to %s timed out", ", ".join(targets))
        return False


# Sync code (views, Celery tasks) publishes through one long-lived event loop per process. Django's
# async_to_sync would start a loop, and the channel layer a Redis connection, for every call: about
# 1.7 ms of CPU per broadcast against a fraction of that here.
PUBLISH_TIMEOUT = 5.0
_publisher: tuple[int, asyncio.AbstractEventLoop] | None = None
_publisher_lock = threading.Lock()


def _publisher_loop() -> asyncio.AbstractEventLoop:
    global _publisher
    with _publisher_lock:
        if _publisher is None or _publisher[0] != os.getpid():  # a forked child needs its own thread
            loop = asyncio.new_event_loop()
            threading.Thread(target=loop.run_forever, name="pivra-publisher", daemon=True).start()
            _publisher = (os.getpid(), loop)
        return _publisher[1]


async def _send_all(layer: BaseChannelLayer, groups: list[str], message: dict[str, Any]) -> bool:
    sent = True
    for group in groups:
        for attempt in (1, 2):
            try:
                await layer.group_send(group, message)
                break
            except Exception as exc:  # a broadcast failure must never undo or fail a committed state change
                if attempt == 1 and is_unavailable(exc):
                    # The pool's connection from before a Redis restart fails once ("Connection closed
                    # by server") and is dropped: the second try opens a fresh one. Without it the
                    # first push after an outage waited for the push-repair sweep.
                    continue
                if is_unavailable(exc):  # an outage: one line (the push-repair sweep republishes later)
                    log_unavailable("broadcast", exc)
                else:
                    logger.exception("broadcast to %s failed", group)
                sent = False
    return sent


def send_frames_now(frames: list[tuple[str, dict[str, Any]]]) -> bool:
    """Send a different frame to each group in one publish round (the queue's position frames: one
    per numbered visitor, at most 50). Only after commit; True when every group got its frame (the
    caller forgets what it sent otherwise, so the next announcement sends it again)."""
    layer = get_channel_layer()
    if layer is None or not frames:
        return layer is not None

    async def send() -> bool:
        # Concurrently: one round trip's latency for the batch instead of one per visitor.
        results = await asyncio.gather(
            *(_send_all(layer, [group], {"type": EVENT_TYPE, "frame": frame}) for group, frame in frames)
        )
        return all(results)

    future = asyncio.run_coroutine_threadsafe(send(), _publisher_loop())
    try:
        return future.result(timeout=PUBLISH_TIMEOUT)
    except TimeoutError:
        future.cancel()
        logger.error("broadcast of %d frames timed out", len(frames))
        return False


def send_on_commit(groups: Iterable[str], frame: dict[str, Any]) -> None:
    """Send once the current transaction commits; nothing is sent for a rolled-back one."""
    targets = list(groups)
    transaction.on_commit(lambda: send_now_rollback_unsafe(targets, frame))


# --- push receipts ---------------------------------------------------------------------------------
# A process can die between committing an event and publishing it (a Celery worker killed mid-task).
# Sockets that reconnect replay the gap from the log, but a socket that stays open would never hear
# of it. So every published event leaves a receipt — the highest seq pushed per conversation, in
# Redis — and a beat sweep (``handoff.pushes``) republishes what committed without a receipt.

PUSH_RECEIPT_SECONDS = 3600  # far longer than the sweep's look-back window
_MARK_PUSHED = """
local current = tonumber(redis.call('GET', KEYS[1]) or '0')
if tonumber(ARGV[1]) > current then redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2]) end
"""


def _receipt_key(conversation_id: int, *, state: bool) -> str:
    return f"{settings.CHANNEL_PREFIX}:{'pushed-state' if state else 'pushed'}:{conversation_id}"


def push_receipt_record(*, conversation_id: int, seq: int, state: bool = False) -> None:
    """Everything up to ``seq`` of this conversation has been published — its events, or with
    ``state`` its state as of that seq (never moves backwards)."""
    try:
        shared_redis().eval(_MARK_PUSHED, 1, _receipt_key(conversation_id, state=state), seq, PUSH_RECEIPT_SECONDS)
    except redis.RedisError:
        logger.warning("could not record the push receipt of conversation %s", conversation_id, exc_info=True)


def push_receipts(conversation_ids: Iterable[int], *, state: bool = False) -> dict[int, int]:
    """The highest pushed seq per conversation — of its events, or with ``state`` of its state
    announcements (0 when there is no receipt)."""
    ids = list(conversation_ids)
    if not ids:
        return {}
    values = shared_redis().mget([_receipt_key(pk, state=state) for pk in ids])
    return {pk: int(value) if value is not None else 0 for pk, value in zip(ids, values, strict=True)}


# One frame and the groups that get it. An event goes out as two: the visitor's frame to the widget,
# the team's (with all of its data) to the console (``conversations.frames.event_frame``).
FrameBatch = tuple[Iterable[str], dict[str, Any]]


def send_event_on_commit(batches: Iterable[FrameBatch], *, conversation_id: int, seq: int) -> None:
    """Publish a conversation event ``seq`` after commit, each batch's frame to its groups, then record
    its receipt (only when every group got its frame)."""
    _send_with_receipt_on_commit(batches, conversation_id=conversation_id, seq=seq, state=False)


def send_state_on_commit(groups: Iterable[str], frame: dict[str, Any], *, conversation_id: int, seq: int) -> None:
    """Publish a conversation's new state (as of its event ``seq``) after commit, then record a
    state receipt. Its own receipt, because a process can die between a transaction's event push
    and its state push: the event then has its receipt, and only this one says the state is missing."""
    _send_with_receipt_on_commit([(groups, frame)], conversation_id=conversation_id, seq=seq, state=True)


def _send_with_receipt_on_commit(batches: Iterable[FrameBatch], *, conversation_id: int, seq: int, state: bool) -> None:
    targets = [(list(groups), frame) for groups, frame in batches]

    def push() -> None:
        sent = [send_now_rollback_unsafe(groups, frame) for groups, frame in targets if groups]
        if all(sent):
            push_receipt_record(conversation_id=conversation_id, seq=seq, state=state)

    transaction.on_commit(push)


# --- AI silence ------------------------------------------------------------------------------------
# A reply streaming when a person is asked for must stop at once: the conversation's new state is
# on the wire right after the request commits, and no AI token may follow it. The request sets this
# key on commit, before its broadcasts; the streaming worker reads it before every token it
# publishes — a Redis read per token, where re-reading the conversation row would be a query each.

AI_SILENCE_SECONDS = 3600  # far longer than any reply streams; the row's status covers the rest


def _silence_key(conversation_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:ai-silenced:{conversation_id}"


def ai_silence_on_commit(*, conversation_id: int) -> None:
    """Once the transaction commits, every AI reply streaming in this conversation stops publishing."""

    def silence() -> None:
        try:
            shared_redis().set(_silence_key(conversation_id), 1, ex=AI_SILENCE_SECONDS)
        except redis.RedisError:
            # The worker still re-reads the status, and the final write re-checks it under the lock.
            logger.warning("could not silence the AI of conversation %s", conversation_id, exc_info=True)

    # robust: whatever happens here, the request's own broadcasts registered after it must still leave.
    transaction.on_commit(silence, robust=True)


def ai_silenced(*, conversation_id: int) -> bool:
    """Whether a committed handoff request has silenced the AI of this conversation."""
    try:
        return bool(shared_redis().exists(_silence_key(conversation_id)))
    except redis.RedisError:
        return False  # Redis is unreachable: the token could not be published either
