"""WebSocket routes; each app contributes its own ``websocket_urlpatterns``."""

from __future__ import annotations

from django.urls import URLPattern, URLResolver

websocket_urlpatterns: list[URLPattern | URLResolver] = []
