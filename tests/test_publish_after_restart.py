"""The first broadcast after a Redis restart reaches Redis: the pool's connection from before the
restart fails once and is replaced, instead of the push waiting for the push-repair sweep."""

from __future__ import annotations

import os
import signal
from typing import Any

from django.conf import settings as django_settings

from pivra.realtime import send_now_rollback_unsafe
from pivra.servers import start_redis


def test_the_first_broadcast_after_a_redis_restart_is_sent(settings: Any) -> None:
    redis_server = start_redis()
    restarted = None
    try:
        layer: dict[str, Any] = django_settings.CHANNEL_LAYERS["default"]
        settings.CHANNEL_LAYERS = {"default": {**layer, "CONFIG": {**layer["CONFIG"], "hosts": [redis_server.url]}}}
        assert send_now_rollback_unsafe(["restart-test"], {"type": "ping"})
        port = int(redis_server.url.rsplit(":", 1)[1].split("/")[0])
        os.killpg(redis_server.process.pid, signal.SIGKILL)
        redis_server.process.wait(10)
        restarted = start_redis(port=port)  # nothing was published during the outage
        assert send_now_rollback_unsafe(["restart-test"], {"type": "ping"})
    finally:
        for server in (restarted, redis_server):
            if server is not None:
                server.stop()
