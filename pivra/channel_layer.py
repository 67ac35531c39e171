"""channels-redis's publish/subscribe layer with a lighter inbox per channel.

Every socket consumer owns one channel, and the stock layer gives each an ``asyncio.Queue``: four
deques (its getters, putters, items and an ``Event``'s waiters), about 3 KB, for an inbox that is
empty nearly all the time. With ten thousand idle widget sockets in one process that is 30 MB, a
tenth of the memory they cost (the bench's tracemalloc diff). ``Inbox`` keeps the two methods the
layer calls and allocates its deque and waiter only while they are needed.
"""

from __future__ import annotations

import asyncio
from collections import deque
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer
from channels_redis.utils import _wrap_close


class Inbox:
    """An unbounded FIFO with ``put_nowait`` and ``await get()``, as ``asyncio.Queue`` has.

    As in ``asyncio.Queue``, an item stays in the deque until a getter takes it, so a getter that is
    cancelled after being woken loses nothing: the next getter finds the item."""

    __slots__ = ("_items", "_waiters")

    def __init__(self) -> None:
        self._items: deque[Any] | None = None
        # A list, not a deque: there is one waiter (the socket's consumer) nearly always, and an
        # empty deque alone costs 760 bytes.
        self._waiters: list[asyncio.Future[None]] | None = None

    def put_nowait(self, item: Any) -> None:
        if self._items is None:
            self._items = deque()
        self._items.append(item)
        self._wake_one()

    async def get(self) -> Any:
        while not self._items:
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            if self._waiters is None:
                self._waiters = []
            self._waiters.append(waiter)
            try:
                await waiter
            except BaseException:
                waiter.cancel()
                self._forget(waiter)
                if self._items and not waiter.cancelled():
                    self._wake_one()  # we were woken but leave: pass the turn on
                raise
            self._forget(waiter)
        assert self._items is not None
        item = self._items.popleft()
        if not self._items:
            self._items = None
        elif self._waiters:
            self._wake_one()
        return item

    def _wake_one(self) -> None:
        while self._waiters:
            waiter = self._waiters.pop(0)
            if not waiter.done():
                waiter.set_result(None)
                break
        if not self._waiters:
            self._waiters = None

    def _forget(self, waiter: asyncio.Future[None]) -> None:
        if self._waiters:
            try:
                self._waiters.remove(waiter)
            except ValueError:
                pass
            if not self._waiters:
                self._waiters = None


class _LoopLayer(RedisPubSubLoopLayer):
    async def _subscribe_to_channel(self, channel: str) -> None:
        self.channels[channel] = Inbox()
        await self._get_shard(channel).subscribe(channel)


class PivraPubSubChannelLayer(RedisPubSubChannelLayer):
    """``RedisPubSubChannelLayer`` (one loop layer per event loop, as there) over ``Inbox``es."""

    def _get_layer(self) -> RedisPubSubLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return layer
