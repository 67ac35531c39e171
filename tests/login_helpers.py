"""For tests that fail logins or reset requests on purpose (axes stays on in tests, as in production)."""

from __future__ import annotations

import redis as redis_lib
from django.conf import settings


def clear_login_counters() -> None:
    """Forget every failed-login and password-reset counter in Redis. A test that fails ten logins
    from one address must call it afterwards, or it locks that address (127.0.0.1 for the browser
    tests, which share the test run's Redis) out of every later test for the lockout's length."""
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    try:
        for pattern in ("*:axes-*", "*:rl:pwreset:*"):
            for key in client.scan_iter(match=pattern):
                client.delete(key)
    finally:
        client.close()
