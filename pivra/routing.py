"""WebSocket routes."""

from __future__ import annotations

from channels.auth import AuthMiddlewareStack

from pivra.asgi_layers import AsgiApp, consumer_application
from pivra.console.consumers import ConsoleConsumer
from pivra.widget.consumers import WidgetConsumer

websocket_routes: dict[str, AsgiApp] = {
    # Visitors prove who they are with their signed token in the first frame; their sockets carry
    # no Django session or user, which keeps each of the thousands of idle widget sockets lighter.
    "/ws/widget/": consumer_application(WidgetConsumer),
    # Agents are Django users: the session cookie authenticates the console socket.
    "/ws/console/": AuthMiddlewareStack(consumer_application(ConsoleConsumer)),
}
