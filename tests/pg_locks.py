"""Helpers for race tests on PostgreSQL: which backend a thread uses, whether it waits for a lock,
and a bounded wait for a condition (tests/test_claim_concurrency.py, tests/test_reply_races.py)."""

from __future__ import annotations

import time
from collections.abc import Callable

from django.db import connection


def backend_pid() -> int:
    """The PostgreSQL backend of this thread's connection."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        row = cursor.fetchone()
    assert row is not None
    return int(row[0])


def waiting_on_a_lock(pids: list[int]) -> bool:
    """Whether the backend in ``pids`` waits for a lock right now (pg_locks is read live, not snapshotted).
    ``pids`` is a holder another thread fills with its backend's pid: empty until that thread has started."""
    if not pids:
        return False
    with connection.cursor() as cursor:
        cursor.execute("SELECT EXISTS (SELECT 1 FROM pg_locks WHERE pid = %s AND NOT granted)", [pids[0]])
        row = cursor.fetchone()
    return bool(row and row[0])


def wait_until(condition: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + 30  # generous: only a hang or a bug takes this long
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting until {what}")
        time.sleep(0.01)
