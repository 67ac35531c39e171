"""WebSocket routes."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver, path

from pivra.console.consumers import ConsoleConsumer
from pivra.widget.consumers import WidgetConsumer

websocket_urlpatterns: list[URLPattern | URLResolver] = [
    path("ws/widget/", WidgetConsumer.as_asgi()),
    path("ws/console/", ConsoleConsumer.as_asgi()),
]
