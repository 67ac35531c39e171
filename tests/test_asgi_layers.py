"""The ASGI chain in front of the sockets keeps no coroutine of its own per connection."""

from __future__ import annotations

import asyncio
import types
from typing import Any
from urllib.parse import urlsplit

import pytest
from asgiref.compatibility import is_double_callable
from django.conf import settings

from pivra.asgi import application
from pivra.sockets import SocketConsumer


def _socket_scope(path: str) -> dict[str, object]:
    origin = settings.PUBLIC_URL.rstrip("/")
    host = urlsplit(origin).netloc
    return {
        "type": "websocket",
        "path": path,
        "query_string": b"",
        "headers": [(b"host", host.encode()), (b"origin", origin.encode())],
        "client": ("127.0.0.1", 50000),
        "scheme": "ws",
    }


async def _never() -> dict[str, object]:
    await asyncio.sleep(3600)
    return {}


async def _drop(message: dict[str, object]) -> None:
    return None


def test_a_widget_socket_runs_as_the_consumers_own_coroutine() -> None:
    # Before: ten coroutines (proxy, type router, two checks, URL router, as_asgi, ...) stood behind
    # each idle socket; now what daphne runs as the connection's task is the consumer's __call__.
    assert not is_double_callable(application)
    connection: Any = application(_socket_scope("/ws/widget/"), _never, _drop)
    try:
        assert isinstance(connection, types.CoroutineType)
        assert connection.cr_code is SocketConsumer.__call__.__code__
    finally:
        connection.close()


def test_an_unknown_socket_path_or_scope_type_is_refused() -> None:
    with pytest.raises(ValueError, match="No route found"):
        application(_socket_scope("/ws/nowhere/"), _never, _drop)
    with pytest.raises(ValueError, match="No application configured"):
        application({"type": "lifespan"}, _never, _drop)


def test_a_socket_from_another_origin_is_denied_not_routed() -> None:
    scope = _socket_scope("/ws/widget/")
    scope["headers"] = [(b"host", urlsplit(settings.PUBLIC_URL).netloc.encode()), (b"origin", b"https://evil.example")]
    denied: Any = application(scope, _never, _drop)
    try:
        assert isinstance(denied, types.CoroutineType)
        assert denied.cr_code is not SocketConsumer.__call__.__code__
    finally:
        denied.close()
