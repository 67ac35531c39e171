"""Django's Redis cache with one connection pool per process and JSON values.

Django keeps cache backends in an ``asgiref.local.Local``, so under ASGI every request context
builds a fresh ``RedisCache``, and with it a fresh connection pool: every session read opened a new
TCP connection to Redis (the bench profile showed connect, health check and redis-py's driver-info
lookup at about 1.5 ms of CPU per console request). Sharing the pool per process keeps the
connections alive across requests; redis-py's pool resets itself in a forked child.

Values are JSON rather than Django's default pickle, so nothing read from Redis is ever unpickled.
Everything cached here (sessions, rate-limit counters, conversation ids) is plain JSON data.
"""

from __future__ import annotations

import json
import threading
from typing import Any

import redis
from django.core.cache.backends.redis import RedisCache, RedisCacheClient

_pools: dict[tuple[str, str], redis.ConnectionPool] = {}
_pools_lock = threading.Lock()
_clients: dict[redis.ConnectionPool, redis.Redis] = {}


class SharedConnectionPool(redis.ConnectionPool):
    """``from_url`` hands out one pool per URL and options for the whole process."""

    @classmethod
    def from_url(cls, url: str, **kwargs: Any) -> redis.ConnectionPool:  # type: ignore[override]
        key = (url, repr(sorted(kwargs.items())))
        with _pools_lock:
            pool = _pools.get(key)
            if pool is None:
                pool = _pools[key] = redis.ConnectionPool.from_url(url, **kwargs)
            return pool


class JSONSerializer:
    """Integers stay raw so ``incr`` keeps working; everything else is JSON."""

    def dumps(self, obj: Any) -> int | bytes:
        if type(obj) is int:
            return obj
        return json.dumps(obj, separators=(",", ":")).encode()

    def loads(self, data: bytes) -> Any:
        try:
            return int(data)
        except ValueError:
            return json.loads(data)


class SharedRedisCacheClient(RedisCacheClient):
    def __init__(self, servers: list[str], **options: Any) -> None:
        options.setdefault("pool_class", SharedConnectionPool)
        options.setdefault("serializer", JSONSerializer)
        super().__init__(servers, **options)

    def get_client(self, key: Any = None, *, write: bool = False) -> redis.Redis:
        """One ``redis.Redis`` per shared pool, not one per cache call: Django builds a client for every
        get or set, and each build fills redis-py's table of ~170 response callbacks (a quarter of a
        millisecond of CPU in the profile of a handoff request). A client is thread-safe: every command
        takes a connection from the pool."""
        base: Any = self  # Django's stubs leave out the pool helpers
        pool = base._get_connection_pool(write)
        client = _clients.get(pool)
        if client is None:
            with _pools_lock:
                client = _clients.setdefault(pool, base._client(connection_pool=pool))
        return client


class SharedRedisCache(RedisCache):
    """``CACHES`` backend: Django's ``RedisCache`` over the process-wide pool."""

    def __init__(self, server: str, params: dict[str, Any]) -> None:
        super().__init__(server, params)
        self._class = SharedRedisCacheClient
