from __future__ import annotations

import os
import time
from collections.abc import Iterator

import pytest
import redis as redis_lib
from asgiref.sync import SyncToAsync
from django.conf import settings
from django.contrib.auth.models import User
from django.core.management.base import CommandError
from django.db import OperationalError, connections
from django.test import TransactionTestCase

from chatbots.models import Chatbot
from tests.factories import Personas, make_personas
from tests.handoff_helpers import enable_handoff


@pytest.fixture(scope="session", autouse=True)
def _clean_redis() -> Iterator[None]:
    """Start from an empty Redis so channel-layer or broker leftovers of an earlier run cannot leak in."""
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    client.flushdb()
    client.close()
    yield


@pytest.fixture(autouse=True)
def _fresh_rate_limits() -> Iterator[None]:
    """Every test starts with empty rate-limit budgets (keys ``rl:*`` of the cache). They live in the
    run's one Redis for up to an hour, so budgets keyed by something every test shares — 127.0.0.1,
    a recipient address, the whole platform's transcripts an hour — would otherwise run out part-way
    through the suite and refuse a later test's first request."""
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    try:
        keys = list(client.scan_iter(match=f"{settings.CACHES['default'].get('KEY_PREFIX', '')}:*:rl:*", count=1000))
        if keys:
            client.delete(*keys)
    finally:
        client.close()
    yield


@pytest.fixture(scope="session", autouse=True)
def _close_connection_pools(django_db_setup: None) -> Iterator[None]:
    """Close the pooled connections before the test database is dropped: a pool keeps its
    connections open after Django "closes" them, and PostgreSQL refuses to drop a database in use."""
    yield
    # Async tests ran their sync_to_async calls on asgiref's one shared thread, whose connections are
    # still checked out: hand them back first (Django's connections are per thread).
    SyncToAsync.single_thread_executor.submit(connections.close_all).result(timeout=30)
    for connection in connections.all(initialized_only=True):
        close_pool = getattr(connection, "close_pool", None)
        if close_pool is not None:
            close_pool()


@pytest.fixture
def personas(db: None) -> Personas:
    """An owner and a teammate of workspace "Acme" (Starter), and an outsider who owns "Other"."""
    return make_personas()


@pytest.fixture
def staff_user(db: None) -> User:
    return User.objects.create_superuser("staff", "staff@example.com", "staff-pass-123")


@pytest.fixture
def bot(personas: Personas) -> Chatbot:
    """The personas' chatbot with handoff enabled (a test module's own ``bot`` fixture overrides it)."""
    return enable_handoff(personas.chatbot)


def pytest_report_header() -> list[str]:
    return [f"pivra database: {settings.DATABASES['default']['ENGINE']}", f"pivra redis: {settings.REDIS_URL}"]


@pytest.hookimpl(trylast=True)  # after tests/e2e/conftest.py has marked its items
def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Browser tests are slowest: run them last, so a quick failure shows up first. (Playwright's
    # sync API also keeps an event loop on the main thread, which async tests must not follow.)
    items.sort(key=lambda item: 1 if item.get_closest_marker("e2e") else 0)


# Django's stubs do not declare this private hook.
_flush_once = getattr(TransactionTestCase, "_fixture_teardown")  # noqa: B009


def _flush_retrying_deadlocks(self: TransactionTestCase) -> None:
    """A transactional test ends by TRUNCATE-ing every table. In the browser tests the real stack's
    beat sweeps (presence, offers, handoff timers, idle) keep reading those tables meanwhile, and
    PostgreSQL may pick the TRUNCATE as a deadlock's victim: it is rolled back whole, so run it again."""
    for attempt in range(5):
        try:
            _flush_once(self)
            return
        except CommandError as exc:
            cause = exc.__cause__
            if attempt == 4 or not isinstance(cause, OperationalError) or "deadlock detected" not in str(cause):
                raise
            time.sleep(0.2 * (attempt + 1))


setattr(TransactionTestCase, "_fixture_teardown", _flush_retrying_deadlocks)  # noqa: B010

os.environ.setdefault("PIVRA_TEST", "1")
