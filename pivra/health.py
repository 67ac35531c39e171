"""``GET /healthz``: database, Redis and Celery worker status (every queue consumed); 503 when any is down."""

from __future__ import annotations

import time
from typing import Any

import redis
from django.conf import settings
from django.db import connection
from django.http import HttpRequest, JsonResponse
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET


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
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
        cursor.fetchone()
    return {"vendor": connection.vendor}


def _redis() -> dict[str, Any]:
    client = redis.Redis.from_url(settings.REDIS_URL, socket_timeout=2, socket_connect_timeout=2)
    try:
        client.ping()
    finally:
        client.close()
    return {}


def _worker() -> dict[str, Any]:
    """Every queue needs a live consumer: a delivery worker alone would leave handoff timeouts
    unrun, and a main worker alone would leave every webhook and email queued."""
    from pivra.celery import app

    replies = app.control.inspect(timeout=1.0).active_queues() or {}
    consumers: dict[str, list[str]] = {}
    for worker, queues in replies.items():
        for queue in queues or []:
            consumers.setdefault(str(queue.get("name")), []).append(worker)
    if not replies:
        raise RuntimeError("no Celery worker answered within 1 s")
    required = [queue.name for queue in app.amqp.queues.values()]
    missing = [name for name in required if name not in consumers]
    if missing:
        raise RuntimeError(f"no Celery worker consumes the {', '.join(missing)} queue")
    return {"workers": sorted(replies), "queues": {name: sorted(consumers[name]) for name in required}}


@never_cache
@require_GET
def healthz(request: HttpRequest) -> JsonResponse:
    checks = {"database": _timed(_database), "redis": _timed(_redis)}
    # Pinging workers goes through Redis: skip it (and say so) when Redis itself is down.
    if checks["redis"]["status"] == "ok":
        checks["worker"] = _timed(_worker)
    else:
        checks["worker"] = {"status": "down", "error": "Redis is down, so workers cannot be reached."}
    healthy = all(check["status"] == "ok" for check in checks.values())
    return JsonResponse({"status": "ok" if healthy else "down", "checks": checks}, status=200 if healthy else 503)
