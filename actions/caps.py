"""Caps on the notifications a visitor can trigger: escalations and leads, per chatbot.

Anyone on a customer's site can ask for a person or leave a number, from as many visitor tokens as
they like: without a cap they could fire a notification every few hundred milliseconds at the
team's inbox, Slack channel or CRM. Each chatbot gets at most ``PIVRA_NOTIFY_LIMIT`` deliveries per
capped event type in each fixed window of ``PIVRA_NOTIFY_WINDOW_MINUTES``; past that, events still
happen in full (the Handoff tab, the conversation, analytics and the outbox row are untouched) but
are not sent one by one. When the window ends, each subscribed action gets one digest delivery
("N more handoff requests in the last M minutes"), so nothing is dropped silently.

Counters live in Redis (shared by every worker): one per chatbot, event type and window, and a
sorted set of windows that owe a digest, scored by the time the window ends. The beat task
``actions.tasks.send_notification_digests`` sends the digests that are due (actions/deliveries.py).

A digest is never lost and never sent twice: claiming a window only leases it (one worker at a
time, for ``DIGEST_CLAIM_LEASE_SECONDS``); it leaves the set once its deliveries are committed
(``notification_digest_settle``, on commit). A failure releases the lease at once, a worker that
died lets it run out, and either way the next run tries again. The digest's id is derived from the
chatbot, event type and window, so a retry after a commit whose settle was lost finds the
deliveries already there and creates none.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.urls import reverse

from actions.events import CAPPED_EVENTS, DIGEST_TYPE, EVENT_VERSION
from chatbots.models import Chatbot
from pivra.cache import SharedConnectionPool

# A window that ended is summed up a little later, so a dispatch that read the clock just before
# the end has counted itself before the digest reads the total.
DIGEST_GRACE_SECONDS = 5
# Counters outlive their window by a day: a beat that was down for hours still finds the totals.
COUNTER_KEEP_SECONDS = 86_400
# How long a claimed window is left to its worker before another may take it over (a worker that
# died between claim and commit); far longer than creating a few delivery rows takes.
DIGEST_CLAIM_LEASE_SECONDS = 300
_DIGEST_NAMESPACE = uuid.UUID("6f1c2b9e-3d4a-5e7f-8a9b-0c1d2e3f4a5b")


def _redis() -> redis.Redis:
    return redis.Redis(connection_pool=SharedConnectionPool.from_url(settings.REDIS_URL))


def _window_seconds() -> int:
    return int(settings.NOTIFY_WINDOW_MINUTES) * 60


def _counter_key(chatbot_id: int, event_type: str, window: int) -> str:
    return cache.make_key(f"notify:{chatbot_id}:{event_type}:{window}")


def _pending_key() -> str:
    return cache.make_key("notify:digests-due")


def _claim_key(member: str) -> str:
    return cache.make_key(f"notify:digest-claim:{member}")


def notification_admit(*, chatbot_id: int, event_type: str, now: datetime) -> bool:
    """Count one notification of ``event_type`` for the chatbot; False once the window's cap is
    passed (the caller then sends nothing, and the window owes a digest). Uncapped types pass."""
    if event_type not in CAPPED_EVENTS:
        return True
    size = _window_seconds()
    window = int(now.timestamp() // size)
    key = _counter_key(chatbot_id, event_type, window)
    client = _redis()
    with client.pipeline() as pipe:
        pipe.incr(key)
        pipe.expire(key, size + COUNTER_KEEP_SECONDS)
        count = int(pipe.execute()[0])
    limit = int(settings.NOTIFY_LIMIT)
    if count <= limit:
        return True
    if count == limit + 1:  # the first one held back: exactly one caller registers the digest
        client.zadd(_pending_key(), {f"{chatbot_id}:{event_type}:{window}": (window + 1) * size})
    return False


@dataclass(frozen=True)
class HeldBack:
    """A window that ended with notifications held back: it owes its subscribers one digest."""

    chatbot_id: int
    event_type: str
    window: int
    count: int

    @property
    def member(self) -> str:
        return f"{self.chatbot_id}:{self.event_type}:{self.window}"

    @property
    def digest_id(self) -> uuid.UUID:
        """The same for every attempt at this window's digest: the idempotency key of its deliveries."""
        return uuid.uuid5(_DIGEST_NAMESPACE, self.member)


def notification_digests_claim(*, now: datetime) -> list[HeldBack]:
    """The windows that have ended and owe a digest, each leased to one caller (SET NX with an
    expiry): parallel beats or workers never work on one at the same time. The caller settles each
    (``notification_digest_settle``) once its deliveries are committed, or releases it on failure."""
    client = _redis()
    claimed: list[HeldBack] = []
    for raw in client.zrangebyscore(_pending_key(), 0, now.timestamp() - DIGEST_GRACE_SECONDS):
        member = raw.decode() if isinstance(raw, bytes) else str(raw)
        if not client.set(_claim_key(member), "1", nx=True, ex=DIGEST_CLAIM_LEASE_SECONDS):
            continue  # another worker holds this window
        chatbot_id, event_type, window = member.rsplit(":", 2)
        total = int(client.get(_counter_key(int(chatbot_id), event_type, int(window))) or 0)
        held = HeldBack(int(chatbot_id), event_type, int(window), total - int(settings.NOTIFY_LIMIT))
        if held.count > 0:
            claimed.append(held)
        else:  # its counter expired (a beat down for a day): nothing left to tell
            notification_digest_settle(held=held)
    return claimed


def notification_digest_settle(*, held: HeldBack) -> None:
    """The window's digest is committed (or owes nothing): it leaves the set for good."""
    client = _redis()
    client.zrem(_pending_key(), held.member)
    client.delete(_claim_key(held.member))


def notification_digest_release(*, held: HeldBack) -> None:
    """Creating the digest failed: the window stays due, and the next run claims it again."""
    _redis().delete(_claim_key(held.member))


def digest_payload(*, chatbot: Chatbot, held: HeldBack, now: datetime) -> dict[str, Any]:
    """What the subscribers get instead of the held-back notifications: how many, of what, when."""
    size = _window_seconds()
    window = held.window
    minutes = size // 60
    query = "?tab=handoff&chatbot=" + str(chatbot.pk)
    return {
        "id": str(held.digest_id),
        "type": DIGEST_TYPE,
        "version": EVENT_VERSION,
        "created_at": now.isoformat(),
        "data": {
            "event_type": held.event_type,
            "count": held.count,
            "limit": int(settings.NOTIFY_LIMIT),
            "window_minutes": minutes,
            "window_start": datetime.fromtimestamp(window * size, tz=UTC).isoformat(),
            "window_end": datetime.fromtimestamp((window + 1) * size, tz=UTC).isoformat(),
            "chatbot": {"id": chatbot.pk, "name": chatbot.name},
            "workspace": {"id": chatbot.workspace_id},
            "url": settings.PUBLIC_URL + reverse("dashboard:conversations") + query,
        },
    }
