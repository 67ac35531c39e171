"""``GET /healthz``: database, Redis and Celery worker status (every queue consumed); 503 when any is down.

Anyone gets ``{"status": "ok" | "unavailable"}`` and the status code, which is all a load balancer
needs. The detail (latencies, worker host names, error texts) names internal hosts, so only staff
users and loopback clients (an operator's curl, the supervisor's probe) see it; ``REMOTE_ADDR`` is
the client's address from the trusted proxy hop (pivra/proxy.py), so a proxy on the same machine
does not make every visitor "loopback".

Probes come every few seconds, so each must be cheap: the database and Redis checks have short
timeouts, and the worker ping (a Celery broadcast that waits a whole second for replies) is kept
per process and refreshed at most every ``WORKER_FRESH`` seconds, in the background.
"""

from __future__ import annotations

import ipaddress
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import redis
from django.conf import settings
from django.db import DatabaseError, connection, transaction
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET

WORKER_PING_TIMEOUT = 1.0
# A snapshot younger than this is served as is; up to WORKER_STALE it is served while a background
# ping refreshes it; older (or none: the process's first probe), the probe waits for a ping.
WORKER_FRESH = 10.0
WORKER_STALE = 60.0
CHECK_TIMEOUT = 1.0


def _timed(check: Any) -> dict[str, Any]:
    started = time.perf_counter()
    try:
        detail = check()
    except Exception as exc:  # a health check reports every failure rather than raising it
        return {"status": "down", "error": f"{type(exc).__name__}: {exc}"[:300]}
    result = {"status": "ok", "latency_ms": round((time.perf_counter() - started) * 1000, 1)}
    if detail:
        result.update(detail)
    return result


def _database() -> dict[str, Any]:
    with transaction.atomic(), connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            # A locked or overloaded database answers "down" quickly instead of holding the probe.
            cursor.execute(f"SET LOCAL statement_timeout = {int(CHECK_TIMEOUT * 1000)}")
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def _redis() -> dict[str, Any]:
    client = redis.Redis.from_url(
        settings.REDIS_URL, socket_timeout=CHECK_TIMEOUT, socket_connect_timeout=CHECK_TIMEOUT
    )
    try:
        client.ping()
    finally:
        client.close()
    return {}


def _worker() -> dict[str, Any]:
    """Every queue needs a live consumer: without the main worker handoff timeouts go unrun,
    without the AI worker no visitor gets an answer, without the delivery worker every webhook and
    email stays queued. The detail names each queue with the workers that consume it."""
    from pivra.celery import app

    replies = app.control.inspect(timeout=WORKER_PING_TIMEOUT).active_queues() or {}
    consumers: dict[str, list[str]] = {}
    for worker, queues in replies.items():
        for queue in queues or []:
            consumers.setdefault(str(queue.get("name")), []).append(worker)
    if not replies:
        raise RuntimeError(f"no Celery worker answered within {WORKER_PING_TIMEOUT:g} s")
    required = [queue.name for queue in app.amqp.queues.values()]
    missing = [name for name in required if name not in consumers]
    if missing:
        raise RuntimeError(f"no Celery worker consumes the {', '.join(missing)} queue")
    return {"workers": sorted(replies), "queues": {name: sorted(consumers[name]) for name in required}}


class WorkerSnapshot:
    """The last worker ping of this process, refreshed by one background ping at a time."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="healthz-ping")
        self._result: dict[str, Any] | None = None
        self._checked_at = 0.0
        self._pending: Future[None] | None = None

    def _ping(self) -> None:
        result = _timed(_worker)
        with self._lock:
            self._result, self._checked_at = result, time.monotonic()

    def refresh(self) -> Future[None]:
        """Start a ping unless one is running; the future ends when the snapshot is updated."""
        with self._lock:
            if self._pending is None or self._pending.done():
                self._pending = self._executor.submit(self._ping)
            return self._pending

    def get(self) -> dict[str, Any]:
        with self._lock:
            result, age = self._result, time.monotonic() - self._checked_at
        if result is not None and age <= WORKER_FRESH:
            return result
        pending = self.refresh()
        if result is not None and age <= WORKER_STALE:
            return {**result, "age_s": round(age, 1)}
        try:
            pending.result(timeout=WORKER_PING_TIMEOUT + 5)
        except Exception:  # a ping that hangs or breaks is a worker we cannot vouch for: "down", not a 500
            return {"status": "down", "error": "the worker ping did not finish"}
        with self._lock:
            return dict(self._result or {"status": "down", "error": "the worker ping did not finish"})

    def wait(self, timeout: float) -> None:
        """Until the ping under way (if any) has updated the snapshot."""
        with self._lock:
            pending = self._pending
        if pending is not None:
            pending.result(timeout=timeout)

    def clear(self) -> None:
        self.wait(timeout=WORKER_PING_TIMEOUT + 5)  # a ping in flight must not write after the clear
        with self._lock:
            self._result, self._checked_at = None, 0.0


worker_snapshot = WorkerSnapshot()


def _is_staff(request: HttpRequest) -> bool:
    """Loading the session's user needs the database: when it is down (the very case a probe is
    about), the caller is treated as not staff and still gets its 503, never a 500."""
    try:
        user = getattr(request, "user", None)
        return bool(user is not None and user.is_authenticated and user.is_active and user.is_staff)
    except DatabaseError:
        return False


def _sees_detail(request: HttpRequest) -> bool:
    if _is_staff(request):
        return True
    try:
        return ipaddress.ip_address(str(request.META.get("REMOTE_ADDR", ""))).is_loopback
    except ValueError:
        return False


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _timed(_database), "redis": _timed(_redis)}
    # Pinging workers goes through Redis: skip it (and say so) when Redis itself is down.
    if checks["redis"]["status"] == "ok":
        checks["worker"] = worker_snapshot.get()
    else:
        checks["worker"] = {"status": "down", "error": "Redis is down, so workers cannot be reached."}
    healthy = all(check["status"] == "ok" for check in checks.values())
    body: dict[str, Any] = {"status": "ok" if healthy else "unavailable"}
    if _sees_detail(request):
        body["checks"] = checks
    return JsonResponse(body, status=200 if healthy else 503)
