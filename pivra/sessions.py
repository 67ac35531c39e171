"""Sessions read from Redis with the database as the record — readable while Redis is down.

Django's ``cached_db`` store already treats a failed cache read as a miss, but then writes the row it
read back to the cache unguarded, and tests membership with ``in cache``: with Redis out of reach
every signed-in page was a 500. Here reads fall back to the database (so the console's pages that only
read the database keep working), and refilling the cache is best-effort.

A change is another matter: a session written or deleted in the database while its cached copy stays
behind would come back when Redis does (a logged-out session signing in again). So a write first
removes the cached copy — if that fails, nothing has changed and the request answers 503
(``pivra.unavailable``) — then writes the row, then refills the cache best-effort; a delete removes
the cached copy once more after the row, in case a concurrent read put it back meanwhile.
"""

from __future__ import annotations

from typing import Any

import redis.exceptions
from django.contrib.sessions.backends.cached_db import SessionStore as CachedDBStore
from django.core.cache.backends.base import BaseCache
from kombu.exceptions import OperationalError

from pivra.unavailable import is_unavailable, log_unavailable

_CACHE_ERRORS = (redis.exceptions.RedisError, OperationalError, OSError)


class SessionStore(CachedDBStore):
    # Set or defined by Django's stores; the stubs do not declare them.
    _cache: BaseCache
    _session: dict[str, Any]

    def _get_session_from_db(self) -> Any:
        return super()._get_session_from_db()  # type: ignore[misc]

    def load(self) -> dict[str, Any]:
        try:
            data = self._cache.get(self.cache_key)
        except Exception:  # Django's own reason (an invalid key) or Redis away: read the record
            data = None
        if data is not None:
            return dict(data)
        row = self._get_session_from_db()
        if row is None:
            return {}
        data = self.decode(row.session_data)
        self._cache_set_quietly(data, self.get_expiry_age(expiry=row.expire_date))
        return dict(data)

    def exists(self, session_key: str | None) -> bool:
        if not session_key:
            return False
        try:
            if (self.cache_key_prefix + session_key) in self._cache:
                return True
        except _CACHE_ERRORS as exc:
            log_unavailable("session cache", exc)
        return super(CachedDBStore, self).exists(session_key)

    def save(self, must_create: bool = False) -> None:
        if self.session_key is not None and not must_create:  # a brand-new key has no cached copy
            self._cache.delete(self.cache_key)  # raises while Redis is away: nothing has changed yet
        super(CachedDBStore, self).save(must_create)
        self._cache_set_quietly(self._session, self.get_expiry_age())

    def delete(self, session_key: str | None = None) -> None:
        key = session_key or self.session_key
        if key is None:
            return
        cache_key = self.cache_key_prefix + key
        self._cache.delete(cache_key)  # first, as in save(): raises → 503, no change
        super(CachedDBStore, self).delete(key)
        # Again after the row is gone: a request that read the row in between (a stolen cookie
        # hammering the site while its owner logs out) may have put it back in the cache.
        self._cache_delete_quietly(cache_key)

    def _cache_delete_quietly(self, cache_key: str) -> None:
        try:
            self._cache.delete(cache_key)
        except _CACHE_ERRORS as exc:
            if not is_unavailable(exc):
                raise
            log_unavailable("session cache", exc)

    def _cache_set_quietly(self, data: dict[str, Any], timeout: int) -> None:
        try:
            self._cache.set(self.cache_key, data, timeout)
        except _CACHE_ERRORS as exc:
            if not is_unavailable(exc):
                raise
            log_unavailable("session cache", exc)
