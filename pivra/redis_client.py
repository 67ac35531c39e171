"""One synchronous Redis client per process for Pivra's own keys: push receipts and AI silence
(pivra/realtime.py), AI slots, reply locks and queued notes (conversations/ai_slots.py).

Short limits: a Redis that hangs rather than refuses must cost a request or a task seconds, not
minutes (the callers treat a timeout like any other outage)."""

from __future__ import annotations

import redis
from django.conf import settings

_redis: redis.Redis | None = None


def shared_redis() -> redis.Redis:
    global _redis
    if _redis is None:  # redis-py's pool reconnects after a fork, so one per process is enough
        _redis = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=5, socket_connect_timeout=2)
    return _redis
