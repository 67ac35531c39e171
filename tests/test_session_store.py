"""The session store (pivra/sessions.py): a deleted session never survives in the cache."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.sessions.backends.db import SessionStore as DbStore
from django.core.cache import cache

from pivra.sessions import SessionStore


@pytest.mark.django_db
def test_a_read_racing_a_logout_cannot_put_the_deleted_session_back(monkeypatch: pytest.MonkeyPatch) -> None:
    session = SessionStore()
    session["_auth_user_id"] = "1"
    session.save()
    key = session.session_key
    assert key is not None
    original_delete = DbStore.delete

    def delete_after_a_racing_read(self: Any, session_key: str | None = None) -> None:
        # Another request (say, a stolen cookie) reads the session between the first cache delete
        # and the row's delete: it misses the cache, reads the row and caches it again.
        racer = SessionStore(session_key=key)
        assert racer.load() == {"_auth_user_id": "1"}
        assert cache.get(SessionStore.cache_key_prefix + key) is not None
        original_delete(self, session_key)

    monkeypatch.setattr(DbStore, "delete", delete_after_a_racing_read)
    session.delete()
    assert cache.get(SessionStore.cache_key_prefix + key) is None
    assert SessionStore(session_key=key).load() == {}
