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

import logging
from typing import Any

from channels.consumer import get_handler_name
from channels.exceptions import StopConsumer
from channels.generic.websocket import AsyncWebsocketConsumer

from pivra.unavailable import CLOSE_UNAVAILABLE, is_unavailable, log_unavailable

logger = logging.getLogger(__name__)
CLOSE_SERVER_ERROR = 1011  # what the server closes a socket with when a consumer raised


class SocketConsumer(AsyncWebsocketConsumer):
    """``AsyncWebsocketConsumer`` whose messages are handled on the event loop alone. Any database
    access in a subclass must go through ``channels.db.database_sync_to_async``."""

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        """Redis out of reach — the channel layer's subscribe when the consumer starts (channels-redis's
        pub/sub layer subscribes every new channel), a ``group_add`` in a handler — ends the socket
        cleanly with ``CLOSE_UNAVAILABLE`` (4503), which both clients treat as "reconnect with
        backoff", and one log line, instead of a traceback and a handshake the browser sees as 1006."""
        seen = {"connect": False, "accept": False, "close": False}

        async def tracked_receive() -> dict[str, Any]:
            message: dict[str, Any] = await receive()
            if message.get("type") == "websocket.connect":
                seen["connect"] = True
            elif message.get("type") == "websocket.disconnect":
                seen["close"] = True
            return message

        async def tracked_send(message: dict[str, Any]) -> None:
            if message.get("type") == "websocket.accept":
                seen["accept"] = True
            elif message.get("type") == "websocket.close":
                seen["close"] = True
            await send(message)

        try:
            await super().__call__(scope, tracked_receive, tracked_send)
        except Exception as exc:
            try:
                if not is_unavailable(exc):
                    raise
                log_unavailable(f"{type(self).__name__} socket", exc)
                if seen["close"]:
                    return
                if not seen["connect"]:
                    message = await receive()
                    if message.get("type") != "websocket.connect":
                        return
                if not seen["accept"]:
                    await send({"type": "websocket.accept"})
                await send({"type": "websocket.close", "code": CLOSE_UNAVAILABLE})
            finally:
                await self._leave_after_failure(CLOSE_UNAVAILABLE if is_unavailable(exc) else CLOSE_SERVER_ERROR)

    async def _leave_after_failure(self, code: int) -> None:
        """What ``websocket_disconnect`` does (leave the groups, ``disconnect``), for a consumer ended
        by an exception: channels runs it only on the client's disconnect message, which a consumer
        that raised never reads, so its group memberships and their Redis subscriptions would stay
        (and the widget's hello timer would fire on a closed socket). Best effort, one log line."""
        if getattr(self, "channel_name", None) is None:
            return  # the channel itself failed (new_channel): nothing was joined
        try:
            for group in self.groups:
                await self.channel_layer.group_discard(group, self.channel_name)
            await self.disconnect(code)
        except Exception as exc:
            if is_unavailable(exc):
                log_unavailable(f"{type(self).__name__} socket cleanup", exc)
            else:
                logger.warning("%s socket cleanup failed: %s: %s", type(self).__name__, type(exc).__name__, exc)

    async def pivra_unavailable(self, message: dict[str, Any]) -> None:
        """The process's subscription to Redis failed (``pivra.channel_layer``): this socket hears
        nothing meanwhile, so it closes and its client reconnects — and replays — when Redis is back."""
        await self.close(code=CLOSE_UNAVAILABLE)

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
