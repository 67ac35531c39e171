"""Where the console socket's ``reply`` and ``claim`` commands run, and how many may.

Commands run on threads of their own, not on the single thread every sync view and every other
``database_sync_to_async`` call shares, so fifty agents claiming at once wait for PostgreSQL's row
lock, not for each other in Python. Each thread takes a pooled connection for the length of one
command, so the threads are sized from the pool: they get half of what is left once the sync
thread and the publisher have one each, and none at all when that is nothing (a pool of one or two:
commands then run on the shared sync thread, which never needs a second connection).

Two limits keep one agent from crowding out the others: a per-socket token bucket (a flood of
frames is refused with ``rate_limited`` before it reaches the database) and a per-user cap on
commands running at once in this process (an agent with many open pages still takes at most
``USER_COMMANDS_AT_ONCE`` threads; the rest wait their turn).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from channels.db import DatabaseSyncToAsync, database_sync_to_async
from django.conf import settings

from pivra.console.commands import CommandOutcome, console_command

# The most command threads a process runs, however large the pool.
MAX_COMMAND_THREADS = 16
# Connections a process needs besides the command threads: the shared sync thread and the publisher.
RESERVED_CONNECTIONS = 2
# Commands of one user running at once in one process; more wait (a human sends one at a time,
# a few open pages may overlap).
USER_COMMANDS_AT_ONCE = 2
# A bound on what one socket can make the database write, not on how fast a person types (nobody
# sends 30 replies a second): 60 commands in a burst, then 30 a second; the rest are refused
# without touching the database. Lower, it would bind the bench's agents before the server does:
# its 50 agents share the load (600 replies/s are 12 a second per socket; 10 conversations at
# 200 replies/s, 20 a second on each of their 10 agents), so it binds the bench only above 1,500/s.
COMMAND_BURST = 60
COMMAND_RATE_PER_SECOND = 30.0


def command_threads(pool_max: int | None) -> int:
    """Threads for commands given the pool's ``max_size`` (None: no pool, as on SQLite): 0 means
    "run them on the shared sync thread"."""
    if pool_max is None:
        return 0
    return min(MAX_COMMAND_THREADS, max(0, pool_max - RESERVED_CONNECTIONS) // 2)


def _pool_max() -> int | None:
    options: dict[str, Any] = settings.DATABASES["default"].get("OPTIONS") or {}  # type: ignore[assignment]
    pool = options.get("pool")
    return int(pool.get("max_size", 4)) if isinstance(pool, dict) else None


_THREADS = command_threads(_pool_max())
COMMAND_EXECUTOR: ThreadPoolExecutor | None = (
    ThreadPoolExecutor(max_workers=_THREADS, thread_name_prefix="console-command") if _THREADS else None
)
run_command: Callable[..., Awaitable[CommandOutcome]] = (
    DatabaseSyncToAsync(console_command, thread_sensitive=False, executor=COMMAND_EXECUTOR)
    if COMMAND_EXECUTOR is not None
    else database_sync_to_async(console_command)
)


class TokenBucket:
    """``burst`` commands at once, refilled at ``rate`` a second; ``take`` says whether one may run."""

    def __init__(self, *, burst: int, rate: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.burst, self.rate, self._clock = burst, rate, clock
        self._tokens = float(burst)
        self._at = clock()

    def take(self) -> bool:
        now = self._clock()
        self._tokens = min(float(self.burst), self._tokens + (now - self._at) * self.rate)
        self._at = now
        if self._tokens < 1:
            return False
        self._tokens -= 1
        return True


def command_bucket() -> TokenBucket:
    return TokenBucket(burst=COMMAND_BURST, rate=COMMAND_RATE_PER_SECOND)


# user id → (its semaphore, how many commands hold or wait for it); an entry lives only while used,
# so the map stays as small as the number of agents with a command in flight.
_user_slots: dict[int, tuple[asyncio.Semaphore, int]] = {}


@contextlib.asynccontextmanager
async def user_command_slot(user_id: int) -> AsyncIterator[None]:
    """Hold one of the user's ``USER_COMMANDS_AT_ONCE`` slots in this process while a command runs."""
    semaphore, users = _user_slots.get(user_id) or (asyncio.Semaphore(USER_COMMANDS_AT_ONCE), 0)
    _user_slots[user_id] = (semaphore, users + 1)
    try:
        async with semaphore:
            yield
    finally:
        semaphore, users = _user_slots[user_id]
        if users <= 1:
            del _user_slots[user_id]
        else:
            _user_slots[user_id] = (semaphore, users - 1)
