"""Listening to channel-layer groups from synchronous tests."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer


def frames_heard(group: str, run: Callable[[], Any], *, quiet_seconds: float = 0.5) -> list[dict[str, Any]]:
    """Frames a socket subscribed to ``group`` receives while ``run`` executes, until the group has
    been quiet for ``quiet_seconds``. One event loop subscribes and drains, as a consumer has; ``run``
    executes on the test's thread, so it sees the test's database transaction."""
    layer = get_channel_layer()
    frames: list[dict[str, Any]] = []

    async def collect() -> None:
        channel = await layer.new_channel()
        await layer.group_add(group, channel)
        await sync_to_async(run)()
        while True:
            try:
                message = await asyncio.wait_for(layer.receive(channel), timeout=quiet_seconds)
            except TimeoutError:
                return
            frames.append(message["frame"])

    async_to_sync(collect)()
    return frames


def sse_stream(application: Any, *, token: str, conversation: str) -> Any:
    """An ``ApplicationCommunicator`` for the visitor's ``GET /api/widget/stream`` (send the request next)."""
    from channels.testing import ApplicationCommunicator

    return ApplicationCommunicator(
        application,
        {
            "type": "http",
            "asgi": {"version": "3.0"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": "/api/widget/stream",
            "raw_path": b"/api/widget/stream",
            "root_path": "",
            "query_string": f"conversation={conversation}".encode(),
            "headers": [(b"host", b"127.0.0.1:8000"), (b"authorization", f"Bearer {token}".encode())],
            "client": ("127.0.0.1", 50000),
            "server": ("127.0.0.1", 8000),
        },
    )
