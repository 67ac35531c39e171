"""The base of Pivra's socket consumers: channels' consumer without a database thread hop per message.

Channels (4.2+) runs ``close_old_connections`` before every handler of every consumer, through
``sync_to_async`` on the process's single thread-sensitive executor — the same thread that runs every
Django view and every ``database_sync_to_async`` call. A push to an idle widget socket then waits
behind whatever requests are queued there: under a burst of handoff requests, Team busy reached the
widget seconds late while the timer had fired on time (the bench's timeout figure). Our consumers
touch the database only through ``database_sync_to_async``, which closes stale connections itself,
on its thread, before and after each call, so the per-message hop protects nothing here.
"""

from __future__ import annotations

from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer


class SocketConsumer(AsyncWebsocketConsumer):
    """``AsyncWebsocketConsumer`` whose messages are handled on the event loop alone. Any database
    access in a subclass must go through ``channels.db.database_sync_to_async``."""

    async def dispatch(self, message: dict[str, Any]) -> None:
        handler = getattr(self, get_handler_name(message), None)
        if handler is None:
            raise ValueError(f"No handler for message type {message['type']}")
        await handler(message)

    async def websocket_disconnect(self, message: dict[str, Any]) -> None:
        # Channels' own, less the same hop after ``disconnect``: ten thousand widgets dropping at once
        # would otherwise queue ten thousand tasks on the thread the views need.
        for group in self.groups:
            await self.channel_layer.group_discard(group, self.channel_name)
        await self.disconnect(message["code"])
        raise StopConsumer()
