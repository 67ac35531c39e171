"""/healthz: the bare status for anyone, the detail for staff and loopback only, and a worker ping
that is not repeated on every probe."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib import auth
from django.contrib.auth.models import User
from django.db import OperationalError
from django.test import Client

from pivra import health

pytestmark = pytest.mark.django_db
OUTSIDE = "203.0.113.9"


class _FakeWorkers:
    """Stands in for the Celery broadcast: counts pings, answers or fails on demand."""

    def __init__(self) -> None:
        self.calls = 0
        self.error: str | None = None

    def __call__(self) -> dict[str, Any]:
        self.calls += 1
        if self.error:
            raise RuntimeError(self.error)
        return {"workers": ["celery@worker-7.internal"], "queues": {"celery": ["celery@worker-7.internal"]}}


@pytest.fixture
def workers(monkeypatch: pytest.MonkeyPatch) -> Iterator[_FakeWorkers]:
    fake = _FakeWorkers()
    monkeypatch.setattr(health, "_worker", fake)
    health.worker_snapshot.clear()
    yield fake
    health.worker_snapshot.clear()


def test_anyone_else_gets_the_status_only(workers: _FakeWorkers) -> None:
    response = Client(REMOTE_ADDR=OUTSIDE).get("/healthz")
    assert response.status_code == 200
    assert response.json() == {"status": "ok"}
    assert b"worker-7" not in response.content


def test_a_failure_is_a_503_without_its_text(workers: _FakeWorkers) -> None:
    workers.error = "no route to redis-internal.corp:6379"
    response = Client(REMOTE_ADDR=OUTSIDE).get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}
    # The operator on the machine sees why.
    local = Client().get("/healthz")
    assert local.status_code == 503
    assert "redis-internal.corp" in local.json()["checks"]["worker"]["error"]


def test_loopback_and_staff_see_the_detail_and_other_users_do_not(
    workers: _FakeWorkers, staff_user: User, personas: Any
) -> None:
    local = Client().get("/healthz").json()  # the test client's REMOTE_ADDR is 127.0.0.1
    assert set(local["checks"]) == {"database", "redis", "worker"}
    assert local["checks"]["worker"]["workers"] == ["celery@worker-7.internal"]

    staff = Client(REMOTE_ADDR=OUTSIDE)
    staff.force_login(staff_user)
    assert staff.get("/healthz").json()["checks"]["database"]["status"] == "ok"

    owner = Client(REMOTE_ADDR=OUTSIDE)
    owner.force_login(personas.owner)  # a workspace owner, not Pivra staff
    assert owner.get("/healthz").json() == {"status": "ok"}


def test_the_worker_ping_is_reused_then_refreshed_in_the_background(workers: _FakeWorkers) -> None:
    client = Client(REMOTE_ADDR=OUTSIDE)
    for _ in range(5):
        assert client.get("/healthz").status_code == 200
    assert workers.calls == 1  # one broadcast for five probes

    # Past its freshness the snapshot is still served at once, and one ping refreshes it behind.
    health.worker_snapshot._checked_at -= health.WORKER_FRESH + 1
    workers.error = "the worker died"
    assert client.get("/healthz").status_code == 200
    health.worker_snapshot.wait(timeout=10)
    assert workers.calls == 2
    assert client.get("/healthz").status_code == 503

    # Too old to trust: the probe waits for a fresh ping rather than answer from it.
    workers.error = None
    health.worker_snapshot._checked_at -= health.WORKER_STALE + 1
    assert client.get("/healthz").status_code == 200
    assert workers.calls == 3


def test_a_worker_ping_that_never_finishes_is_a_503(monkeypatch: pytest.MonkeyPatch) -> None:
    # The process's first probe waits for the ping; a ping stuck past that wait is "down", not a 500.
    release = threading.Event()

    def stuck() -> dict[str, Any]:
        release.wait(timeout=30)
        return {"workers": ["w"]}

    monkeypatch.setattr(health, "_worker", stuck)
    monkeypatch.setattr(health, "WORKER_PING_TIMEOUT", -4.99)  # the probe waits WORKER_PING_TIMEOUT + 5 s
    health.worker_snapshot.clear()
    try:
        response = Client(REMOTE_ADDR=OUTSIDE).get("/healthz")
        assert response.status_code == 503
        assert response.json() == {"status": "unavailable"}
        local = Client().get("/healthz").json()
        assert local["checks"]["worker"] == {"status": "down", "error": "the worker ping did not finish"}
    finally:
        release.set()
        health.worker_snapshot.wait(timeout=30)
        health.worker_snapshot.clear()


def test_a_session_user_with_the_database_down_is_a_503(
    workers: _FakeWorkers, staff_user: User, monkeypatch: pytest.MonkeyPatch
) -> None:
    staff = Client(REMOTE_ADDR=OUTSIDE)
    staff.force_login(staff_user)  # the session cookie makes the probe look up its user

    def unreachable(*args: Any, **kwargs: Any) -> Any:
        raise OperationalError("could not connect to server: Connection refused")

    monkeypatch.setattr(health, "_database", unreachable)
    monkeypatch.setattr(auth, "get_user", unreachable)
    response = staff.get("/healthz")
    assert response.status_code == 503
    assert response.json() == {"status": "unavailable"}  # not known to be staff: no detail
