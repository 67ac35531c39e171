"""channels-redis's publish/subscribe layer with a lighter inbox per channel.

Every socket consumer owns one channel, and the stock layer gives each an ``asyncio.Queue``: four
deques (its getters, putters, items and an ``Event``'s waiters), about 3 KB, for an inbox that is
empty nearly all the time. With ten thousand idle widget sockets in one process that is 30 MB, a
tenth of the memory they cost (the bench's tracemalloc diff). ``Inbox`` keeps the two methods the
layer calls and allocates its deque and waiter only while they are needed.

For the tests only, a process started with ``PIVRA_TEST_DROP_PUSH=1`` can lose one chosen group
message, as pub/sub may (pivra/push_drop.py); otherwise the stock shard connections are used.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any

from channels_redis.pubsub import RedisPubSubChannelLayer, RedisPubSubLoopLayer, RedisSingleShardConnection
from channels_redis.utils import _wrap_close

from pivra import push_drop
from pivra.unavailable import is_unavailable, log_unavailable

logger = logging.getLogger(__name__)


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


# The message every channel of a process gets when its subscription connection fails (Redis away).
UNAVAILABLE_MESSAGE = "pivra.unavailable"


class _WatchedShard(RedisSingleShardConnection):
    """Tells every channel of this process when the subscription connection fails (Redis away). A
    socket's subscription is lost meanwhile (whatever is published then never reaches it), yet it
    would stay open and deaf: told, it closes with 4503 and its client reconnects once Redis is back,
    replaying what it missed from the database (``pivra.sockets``, ``pivra.widget.sse``). The stock
    loop also logged a traceback every second of the outage; this logs one line."""

    async def _do_receiving(self) -> None:
        failing = False
        while True:
            try:
                if self._pubsub and self._pubsub.subscribed:
                    message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=0.1)
                    failing = False
                    self._receive_message(message)
                else:
                    await asyncio.sleep(0.1)
            except (TimeoutError, asyncio.CancelledError, GeneratorExit):
                raise
            except Exception as exc:
                if not is_unavailable(exc):
                    logger.exception("Unexpected exception in receive task")
                elif not failing:
                    failing = True
                    log_unavailable("channel layer subscription", exc)
                    self._tell_every_channel()
                await asyncio.sleep(1)

    async def unsubscribe(self, channel: str) -> None:
        """A socket ending while Redis is away: its subscription died with the connection. Forget it
        (so the reconnect does not renew it) instead of logging a traceback per socket."""
        try:
            await super().unsubscribe(channel)
        except Exception as exc:
            if not is_unavailable(exc):
                raise
            self._subscribed_to.discard(channel)
            if self._pubsub is not None:
                for key in (channel, channel.encode()):
                    self._pubsub.channels.pop(key, None)
                    self._pubsub.pending_unsubscribe_channels.discard(key)

    def _tell_every_channel(self) -> None:
        layer = self.channel_layer
        data = layer.channel_layer.serialize({"type": UNAVAILABLE_MESSAGE})
        for inbox in list(layer.channels.values()):
            inbox.put_nowait(data)


class _DroppingShard(_WatchedShard):
    """A shard connection that can lose one chosen group message (tests only: pivra/push_drop.py)."""

    def _receive_message(self, message: Any) -> None:
        if message is not None:
            name = message["channel"]
            name = name.decode() if isinstance(name, bytes) else name
            layer = self.channel_layer
            if push_drop.should_drop(
                group_channel=name,
                group_prefix=f"{layer.prefix}__group__",
                data=message["data"],
                deserialize=layer.channel_layer.deserialize,
            ):
                return
        super()._receive_message(message)


class _LoopLayer(RedisPubSubLoopLayer):
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        shard_class = _DroppingShard if push_drop.ENABLED else _WatchedShard  # the hook: tests only
        shards: list[RedisSingleShardConnection] = self._shards  # type: ignore[has-type]
        self._shards = [shard_class(shard.host, self) for shard in shards]

    async def _subscribe_to_channel(self, channel: str) -> None:
        # Stored before subscribing, as channels-redis does, so nothing published meanwhile is lost;
        # taken back when the subscribe fails (Redis away), or every refused socket would leave one.
        self.channels[channel] = Inbox()
        try:
            await self._get_shard(channel).subscribe(channel)
        except BaseException:
            self.channels.pop(channel, None)
            raise

    async def group_add(self, group: str, channel: str) -> None:
        """channels-redis records the membership before subscribing to the group; when the subscribe
        fails (Redis away) it is taken back, so the failed join leaves nothing to clean up."""
        group_channel = self._get_group_channel_name(group)
        joining = channel not in self.groups.get(group_channel, ())
        try:
            await super().group_add(group, channel)
        except BaseException:
            members = self.groups.get(group_channel)
            if joining and members is not None:
                members.discard(channel)
                if not members:
                    del self.groups[group_channel]
            raise

    async def delete_channel(self, channel: str) -> None:
        """Forget a channel that will not be received on any more: its inbox and its subscription.
        channels-redis does this only when a ``receive`` is cancelled (see ``channel_delete``)."""
        if self.channels.pop(channel, None) is not None:
            await self._get_shard(channel).unsubscribe(channel)


class PivraPubSubChannelLayer(RedisPubSubChannelLayer):
    """``RedisPubSubChannelLayer`` (one loop layer per event loop, as there) over ``Inbox``es."""

    def _get_layer(self) -> RedisPubSubLoopLayer:
        loop = asyncio.get_running_loop()
        layer = self._layers.get(loop)
        if layer is None:
            layer = self._layers[loop] = _LoopLayer(*self._args, **self._kwargs, channel_layer=self)
            _wrap_close(self, loop)
        return layer


async def channel_delete(*, layer: Any, channel: str) -> None:
    """Drop a channel made with ``new_channel`` whose owner ends without a ``receive`` to cancel (a
    stream refused before it started). Only the pub/sub layer keeps a channel in the process; the
    lists layer (``PIVRA_CHANNEL_LAYER=lists``) has nothing to drop."""
    delete = getattr(layer, "delete_channel", None)
    if delete is not None:
        await delete(channel)
