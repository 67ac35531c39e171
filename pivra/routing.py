"""WebSocket routes."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack
from django.urls import URLPattern, URLResolver, path

from pivra.console.consumers import ConsoleConsumer
from pivra.widget.consumers import WidgetConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    # Visitors prove who they are with their signed token in the first frame; their sockets carry
    # no Django session or user, which keeps each of the thousands of idle widget sockets lighter.
    path("ws/widget/", WidgetConsumer.as_asgi()),
    # Agents are Django users: the session cookie authenticates the console socket.
    path("ws/console/", AuthMiddlewareStack(ConsoleConsumer.as_asgi())),
]
