"""The cache backend: one Redis connection pool per process, JSON values."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.conf import settings
from django.core.cache import caches

from pivra.cache import SharedRedisCache


def _backend() -> Any:  # Any: the stubs do not know RedisCache's private client
    config = settings.CACHES["default"]
    return SharedRedisCache(config["LOCATION"], {k: v for k, v in config.items() if k not in ("BACKEND", "LOCATION")})


def test_every_backend_instance_shares_one_connection_pool() -> None:
    # Django builds a new backend per request context under ASGI; they must not each open connections.
    pools = []

    def in_a_thread() -> None:
        backend = _backend()
        backend.set("pool-probe", 1)
        pools.append(backend._cache.get_client(write=True).connection_pool)

    threads = [threading.Thread(target=in_a_thread) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(pools) == 3
    assert len({id(pool) for pool in pools}) == 1


def test_values_are_stored_as_json_and_counters_as_integers() -> None:
    cache = caches["default"]
    cache.set("json-probe", {"user": "7", "flags": [1, 2]})
    cache.set("counter-probe", 1)
    cache.incr("counter-probe")
    raw = _backend()._cache.get_client().get(cache.make_key("json-probe"))
    assert raw == b'{"user":"7","flags":[1,2]}'
    assert cache.get("json-probe") == {"user": "7", "flags": [1, 2]}
    assert cache.get("counter-probe") == 2


def test_a_value_json_cannot_hold_is_refused_rather_than_pickled() -> None:
    with pytest.raises(TypeError):
        caches["default"].set("object-probe", object())


def test_every_cache_call_reuses_one_client_per_pool() -> None:
    # Django builds a redis.Redis per get/set; each build fills a table of ~170 callbacks.
    first, second = _backend()._cache, _backend()._cache
    assert first.get_client() is second.get_client()
    assert first.get_client(write=True) is first.get_client(write=True)
