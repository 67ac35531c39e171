"""ASGI routing that hands a connection over without keeping a coroutine of its own alive.

A layer written as ``async def __call__(...): return await self.application(...)`` keeps its
coroutine — frame, locals, a reference to the scope — for as long as the connection lasts. Channels'
``ProtocolTypeRouter``, ``URLRouter`` and ``as_asgi`` are written so, as were our own checks in front
of the socket routes: ten such coroutines stood behind every idle widget socket (the bench's census
of a daphne holding 500: sixteen coroutines and three tasks per socket). These layers are plain
callables that return the next application's awaitable, which daphne then runs as the connection's
one task, so only the consumer's own coroutines stay. ``_asgi_single_callable`` tells asgiref (and
daphne) that they are ASGI 3 applications, since their ``__call__`` is not a coroutine function.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from channels.consumer import AsyncConsumer

AsgiApp = Callable[..., Awaitable[Any]]


class TypeRouter:
    """``ProtocolTypeRouter``: the application for the scope's type ("http", "websocket")."""

    _asgi_single_callable = True

    def __init__(self, routes: Mapping[str, AsgiApp]) -> None:
        self.routes = dict(routes)

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        application = self.routes.get(scope["type"])
        if application is None:
            raise ValueError(f"No application configured for scope type {scope['type']!r}")
        return application(scope, receive, send)


class PathRouter:
    """The socket routes by exact path (``/ws/widget/``): channels' ``URLRouter`` without patterns,
    which no route of ours needs. An unknown path fails the handshake as ``URLRouter`` does."""

    _asgi_single_callable = True

    def __init__(self, routes: Mapping[str, AsgiApp]) -> None:
        self.routes = dict(routes)

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        path = scope.get("path")
        if path is None:
            raise ValueError("No 'path' key in connection scope, cannot route URLs")
        root_path = scope.get("root_path", "")
        if root_path and path.startswith(root_path):
            path = path[len(root_path) :]
        application = self.routes.get(path)
        if application is None:
            raise ValueError(f"No route found for path {path[:200]!r}.")
        return application(scope, receive, send)


def consumer_application(consumer_class: type[AsyncConsumer]) -> AsgiApp:
    """``Consumer.as_asgi()``: a fresh consumer per connection, run as the connection's task itself."""

    def application(scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        consumer: Any = consumer_class()
        result: Awaitable[Any] = consumer(scope, receive, send)
        return result

    application._asgi_single_callable = True  # type: ignore[attr-defined]
    application.consumer_class = consumer_class  # type: ignore[attr-defined]  # as as_asgi's, for tools
    return application
