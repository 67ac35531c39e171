"""A developer's test hook: this process loses one chosen push, as Redis pub/sub may.

Pub/sub delivers at most once per subscriber, so a client can miss an event frame on an open socket
or SSE stream; the clients notice the gap in the seqs and fetch it (README "Widget protocol"). The
browser tests prove that by making daphne drop exactly one frame.

Off unless the process starts with ``PIVRA_TEST_DROP_PUSH=1`` (read once, at import): only the test
suite sets it, on a daphne of its own. A tenant cannot reach a process's environment, and when off
the channel layer does not even install the hook. On, a test arms it with a Redis key naming a group
and an event seq (``arm()``); the next delivery of that event to that group in this process is
dropped for all its local members, and the key is deleted as it fires, so it fires once.
"""

from __future__ import annotations

import logging
import os
from typing import Any

import redis
from django.conf import settings
from django.core import checks

logger = logging.getLogger(__name__)

ENABLED = os.environ.get("PIVRA_TEST_DROP_PUSH", "").strip() == "1"
KEY_PREFIX = "pivra:test:drop-push:"
ARMED_SECONDS = 120

_client: redis.Redis | None = None

if ENABLED:
    logger.warning("PIVRA_TEST_DROP_PUSH=1: a test may make this process drop pushes (never in production)")


def drop_key(*, group: str, seq: int) -> str:
    return f"{KEY_PREFIX}{group}:{seq}"


def arm(*, client: redis.Redis, group: str, seq: int) -> None:
    """From a test: drop the next push of event ``seq`` to ``group`` in a hooked process."""
    client.set(drop_key(group=group, seq=seq), "1", ex=ARMED_SECONDS)


def should_drop(*, group_channel: str, group_prefix: str, data: bytes, deserialize: Any) -> bool:
    """Whether this pub/sub message (an event frame to a group) is the armed one. Called only when
    ENABLED; it asks Redis synchronously, which a test process can afford and production never pays."""
    if not group_channel.startswith(group_prefix):
        return False  # a message to one channel, not to a group
    try:
        message = deserialize(data)
        frame = message.get("frame") if isinstance(message, dict) else None
        if not isinstance(frame, dict) or frame.get("type") != "event":
            return False
        key = drop_key(group=group_channel[len(group_prefix) :], seq=int(frame["seq"]))
        dropped = bool(_redis().delete(key))
    except Exception:  # the hook must never break delivery
        logger.exception("push-drop hook failed; delivering")
        return False
    if dropped:
        logger.warning("test hook: dropped the push of event %s to %s", frame["seq"], group_channel)
    return dropped


def _redis() -> redis.Redis:
    global _client
    if _client is None:
        _client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=1)
    return _client


@checks.register(checks.Tags.security, deploy=True)
def check_push_drop_off(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """``manage.py check --deploy`` fails while the hook is on: a production process must never lose
    pushes on purpose."""
    if not ENABLED:
        return []
    return [
        checks.Error(
            "PIVRA_TEST_DROP_PUSH=1 is set: this process lets a test make it drop realtime pushes.",
            hint="Unset PIVRA_TEST_DROP_PUSH; it exists only for the browser tests.",
            id="pivra.E030",
        )
    ]
