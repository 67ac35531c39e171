"""One console socket's presence leases (``chatbots.presence``): opened at connect in each of the
user's workspaces, refreshed every ``REFRESH_SECONDS`` while the socket lives, released at close.

A failure to reach Redis never ends the socket: presence is then unknown for a while, which its
readers treat as "assume online"; the next refresh re-opens the leases. The Redis calls block, so
they run on a worker thread, never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable

import redis
from channels.layers import BaseChannelLayer

from chatbots.availability import presence_frame
from chatbots.presence import REFRESH_SECONDS, presence_admit, presence_dismiss, presence_release, presence_touch
from pivra.realtime import EVENT_TYPE, console_group

logger = logging.getLogger(__name__)


class PresenceLeases:
    def __init__(self, *, layer: BaseChannelLayer, user_id: int, socket_id: str) -> None:
        self.layer = layer
        self.user_id = user_id
        self.socket_id = socket_id
        self.workspace_ids: frozenset[int] = frozenset()
        self._refresher: asyncio.Task[None] | None = None

    async def admit(self) -> bool:
        """Count this socket against the user's cap (``MAX_SOCKETS_PER_USER``); False when they hold
        that many already. Redis out of reach admits it: presence is unknown then anyway."""
        try:
            return await asyncio.to_thread(presence_admit, user_id=self.user_id, socket_id=self.socket_id)
        except redis.RedisError:
            logger.warning("could not count a console socket against its user's cap (Redis out of reach)")
            return True

    async def open(self, workspace_ids: Iterable[int]) -> None:
        self.workspace_ids = frozenset(workspace_ids)
        await self._touch_all()
        self._refresher = asyncio.create_task(self._refresh_periodically())

    async def drop(self, workspace_ids: Iterable[int]) -> None:
        """The user left these workspaces: release their leases now."""
        gone = self.workspace_ids & frozenset(workspace_ids)
        self.workspace_ids -= gone
        await self._release(gone)

    async def close(self) -> None:
        refresher, self._refresher = self._refresher, None
        if refresher is not None and refresher is not asyncio.current_task():
            refresher.cancel()
        gone, self.workspace_ids = self.workspace_ids, frozenset()
        await self._release(gone)
        with contextlib.suppress(redis.RedisError):  # else its count runs out with the lease
            await asyncio.to_thread(presence_dismiss, user_id=self.user_id, socket_id=self.socket_id)

    async def _touch_all(self) -> None:
        for workspace_id in self.workspace_ids:
            try:
                arrived = await asyncio.to_thread(
                    presence_touch, workspace_id=workspace_id, user_id=self.user_id, socket_id=self.socket_id
                )
            except redis.RedisError:
                logger.warning("could not refresh a console presence lease (Redis out of reach)")
                return
            if arrived:
                await self._announce(workspace_id)

    async def _release(self, workspace_ids: Iterable[int]) -> None:
        for workspace_id in workspace_ids:
            try:
                await asyncio.to_thread(
                    presence_release, workspace_id=workspace_id, user_id=self.user_id, socket_id=self.socket_id
                )
            except redis.RedisError:
                return  # the lease runs out by itself

    async def _announce(self, workspace_id: int) -> None:
        message = {"type": EVENT_TYPE, "frame": presence_frame(workspace_id=workspace_id)}
        with contextlib.suppress(Exception):  # a lost announcement costs a stale list, never the socket
            await self.layer.group_send(console_group(workspace_id), message)

    async def _refresh_periodically(self) -> None:
        while True:
            await asyncio.sleep(REFRESH_SECONDS)
            try:
                await self.admit()  # keeps its place under the cap (admitted already: never refused)
                await self._touch_all()
            except Exception:  # a dead refresher would show a member Offline with their console open
                logger.exception("console presence refresh failed")
