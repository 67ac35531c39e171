"""Who may call the AI right now: caps per chatbot and per workspace, one reply per message at a time.

Both are short leases in Redis (``LEASE_SECONDS``) that the process holding them renews every
``RENEW_SECONDS`` while the reply runs (``ai_leases_kept``): a reply may stream up to the LLM
deadline, yet a worker killed mid-reply (or a reply cut off from Redis) frees its slot and its
message within ``LEASE_SECONDS``, so the unanswered sweep can answer that message soon after.

- **Slots** (``ai_slot_acquire``): a sorted set per chatbot and per workspace, member = a random
  lease token, score = its expiry time (Redis's own clock, so workers on other machines agree).
  One Lua script drops expired leases, checks both caps and takes a lease in both sets, atomically.
- **Reply lock** (``ai_reply_lock``): ``SET NX`` per (conversation, visitor message) while a reply
  streams. A redelivered or re-queued twin that finds it held returns without calling the LLM.
- **Queued marker** (``ai_reply_mark_queued``): the unanswered sweep queues a message again only
  once this has expired, so it never floods the queue with copies of one reply.

Redis out of reach: the reply goes ahead without a slot or a lock (the caller is told so) — a brief
outage must not silence the AI, and the final check under the conversation's row lock still stores
one answer per message.
"""

from __future__ import annotations

import logging
import os
import secrets
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import redis
from django.conf import settings

from pivra.redis_client import shared_redis
from pivra.unavailable import is_unavailable, log_unavailable

logger = logging.getLogger(__name__)

# Slots and reply locks: renewed by their holder while it runs, so they can be short.
LEASE_SECONDS = 20
RENEW_SECONDS = 5
# A reply waiting in the queue: the pipeline and the sweep set this when they queue it, a waiting
# reply sets it again on every retry (1 to 2 s), a worker clears it when it starts. A task lost in the
# broker is therefore queued again by the sweep this long after; one merely stuck in a long backlog
# gets a copy that finds the reply lock or the stored answer and ends at once.
QUEUED_SECONDS = 30

_ACQUIRE = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
for i = 1, #KEYS do
  redis.call('ZREMRANGEBYSCORE', KEYS[i], '-inf', now)
  if redis.call('ZCARD', KEYS[i]) >= tonumber(ARGV[2 + i]) then return 0 end
end
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], now + tonumber(ARGV[2]), ARGV[1])
  redis.call('EXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2])) + 1)
end
return 1
"""
_RENEW_SLOT = """
local clock = redis.call('TIME')
local now = tonumber(clock[1]) + tonumber(clock[2]) / 1000000
for i = 1, #KEYS do
  redis.call('ZADD', KEYS[i], 'XX', now + tonumber(ARGV[2]), ARGV[1])
  redis.call('EXPIRE', KEYS[i], math.ceil(tonumber(ARGV[2])) + 1)
end
return 1
"""
_RENEW_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('EXPIRE', KEYS[1], ARGV[2]) end
return 0
"""
_RELEASE_LOCK = """
if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end
return 0
"""


def _key(*parts: object) -> str:
    return ":".join([settings.CHANNEL_PREFIX, "ai", *(str(part) for part in parts)])


@dataclass(frozen=True)
class Slot:
    """A taken AI slot (``token`` None: taken without Redis, nothing to give back)."""

    keys: tuple[str, ...]
    token: str | None


def ai_slot_acquire(*, chatbot_id: int, workspace_id: int) -> Slot | None:
    """A slot for one AI call of this chatbot, or None when its chatbot or its workspace is at its cap."""
    keys = (_key("slots", "chatbot", chatbot_id), _key("slots", "workspace", workspace_id))
    token = secrets.token_hex(8)
    caps = (settings.AI_CONCURRENCY_PER_CHATBOT, settings.AI_CONCURRENCY_PER_WORKSPACE)
    try:
        taken = shared_redis().eval(_ACQUIRE, len(keys), *keys, token, LEASE_SECONDS, *caps)
    except redis.RedisError as exc:
        if not is_unavailable(exc):
            raise  # an error of Redis's own (out of memory, read-only, a script bug) is not an outage
        log_unavailable("AI slots", exc)  # the reply goes ahead without its cap
        return Slot(keys=keys, token=None)
    return Slot(keys=keys, token=token) if taken else None


def ai_slot_release(slot: Slot) -> None:
    if slot.token is None:
        return
    try:
        with shared_redis().pipeline(transaction=False) as pipe:
            for key in slot.keys:
                pipe.zrem(key, slot.token)
            pipe.execute()
    except redis.RedisError:  # the lease expires on its own
        logger.warning("could not give back AI slot %s", slot.token, exc_info=True)


def _lock_key(conversation_id: int, reply_to_seq: int) -> str:
    return _key("replying", conversation_id, reply_to_seq)


@dataclass(frozen=True)
class ReplyLock:
    key: str
    token: str | None


def ai_reply_lock(*, conversation_id: int, reply_to_seq: int) -> ReplyLock | None:
    """The right to answer this visitor message now, or None while another worker answers it."""
    key, token = _lock_key(conversation_id, reply_to_seq), secrets.token_hex(8)
    try:
        taken = shared_redis().set(key, token, nx=True, ex=LEASE_SECONDS)
    except redis.RedisError as exc:
        if not is_unavailable(exc):
            raise
        log_unavailable("AI reply lock", exc)
        return ReplyLock(key=key, token=None)
    return ReplyLock(key=key, token=token) if taken else None


def ai_reply_unlock(lock: ReplyLock) -> None:
    if lock.token is None:
        return
    try:
        shared_redis().eval(_RELEASE_LOCK, 1, lock.key, lock.token)
    except redis.RedisError:  # the lock expires on its own
        logger.warning("could not release the AI reply lock %s", lock.key, exc_info=True)


def ai_reply_locked(*, conversation_id: int, reply_to_seq: int) -> bool:
    """Whether a worker is answering this message right now (raises when Redis is out of reach)."""
    return bool(shared_redis().exists(_lock_key(conversation_id, reply_to_seq)))


# --- renewal while a reply runs --------------------------------------------------------------------
# One daemon thread per process renews every lease its replies hold, in one pipeline per round:
# a worker has up to PIVRA_AI_WORKER_CONCURRENCY replies streaming at once.

_kept: dict[int, tuple[ReplyLock, Slot | None]] = {}
_kept_lock = threading.Lock()
_renewer_pid: int | None = None
_wake = threading.Event()  # a new holder: renew now, and sleep RENEW_SECONDS as it is now


def _renew_round() -> None:
    with _kept_lock:
        held = list(_kept.values())
    if not held:
        return
    try:
        with shared_redis().pipeline(transaction=False) as pipe:
            for lock, slot in held:
                if lock.token is not None:
                    pipe.eval(_RENEW_LOCK, 1, lock.key, lock.token, LEASE_SECONDS)
                if slot is not None and slot.token is not None:
                    pipe.eval(_RENEW_SLOT, len(slot.keys), *slot.keys, slot.token, LEASE_SECONDS)
            pipe.execute()
    except redis.RedisError:  # out of reach: the leases lapse and the sweep answers what is left
        logger.warning("could not renew %d AI lease(s) (Redis)", len(held))


def _renew_forever() -> None:
    while True:
        _wake.wait(RENEW_SECONDS)
        _wake.clear()
        try:
            _renew_round()
        except Exception:  # the renewer must outlive any one bad round
            logger.exception("AI lease renewal failed")


def _ensure_renewer() -> None:
    global _renewer_pid
    with _kept_lock:
        if _renewer_pid == os.getpid():
            return
        _renewer_pid = os.getpid()  # a forked child needs its own thread
    threading.Thread(target=_renew_forever, name="pivra-ai-leases", daemon=True).start()


@contextmanager
def ai_leases_kept(*, lock: ReplyLock, slot: Slot | None) -> Iterator[None]:
    """Keep renewing this reply's lock and slot until the block ends."""
    _ensure_renewer()
    with _kept_lock:
        _kept[id(lock)] = (lock, slot)
    _wake.set()
    try:
        yield
    finally:
        with _kept_lock:
            _kept.pop(id(lock), None)


def _queued_key(conversation_id: int, reply_to_seq: int) -> str:
    return _key("queued", conversation_id, reply_to_seq)


def ai_reply_mark_queued(*, conversation_id: int, reply_to_seq: int, only_if_new: bool) -> bool:
    """Note that a task for this message is queued (or waiting for a slot), for QUEUED_SECONDS.
    With ``only_if_new``, True only when no such note existed: the caller may queue one more.
    Raises when Redis is out of reach."""
    key = _queued_key(conversation_id, reply_to_seq)
    return bool(shared_redis().set(key, 1, nx=only_if_new, ex=QUEUED_SECONDS))


def ai_reply_unmark_queued(*, conversation_id: int, reply_to_seq: int) -> None:
    try:
        shared_redis().delete(_queued_key(conversation_id, reply_to_seq))
    except redis.RedisError:
        logger.warning("could not clear the queued note of conversation %s", conversation_id, exc_info=True)
