"""The channel layer's per-channel inbox behaves as the asyncio.Queue it replaces."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

import pytest
from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer

from pivra.channel_layer import Inbox, PivraPubSubChannelLayer
from pivra.unavailable import is_unavailable

T = TypeVar("T")


def run(scenario: Callable[[], Coroutine[Any, Any, T]]) -> T:
    return asyncio.run(scenario())


def test_items_come_out_in_the_order_they_went_in() -> None:
    async def scenario() -> list[int]:
        inbox = Inbox()
        for item in (1, 2, 3):
            inbox.put_nowait(item)
        return [await inbox.get() for _ in range(3)]

    assert run(scenario) == [1, 2, 3]


def test_a_waiting_getter_is_woken_by_a_put() -> None:
    async def scenario() -> str:
        inbox = Inbox()
        getter = asyncio.ensure_future(inbox.get())
        await asyncio.sleep(0)
        assert not getter.done()
        inbox.put_nowait("frame")
        return await asyncio.wait_for(getter, 1)

    assert run(scenario) == "frame"


def test_a_getter_cancelled_after_being_woken_leaves_the_item_to_the_next() -> None:
    async def scenario() -> str:
        inbox = Inbox()
        first = asyncio.ensure_future(inbox.get())
        second = asyncio.ensure_future(inbox.get())
        await asyncio.sleep(0)
        inbox.put_nowait("only")  # wakes the first getter...
        first.cancel()  # ...which is cancelled before it runs
        with pytest.raises(asyncio.CancelledError):
            await first
        return await asyncio.wait_for(second, 1)

    assert run(scenario) == "only"


def test_several_getters_each_get_one_item() -> None:
    async def scenario() -> list[int]:
        inbox = Inbox()
        getters = [asyncio.ensure_future(inbox.get()) for _ in range(3)]
        await asyncio.sleep(0)
        for item in (10, 20, 30):
            inbox.put_nowait(item)
        return sorted(await asyncio.wait_for(asyncio.gather(*getters), 1))

    assert run(scenario) == [10, 20, 30]


def test_an_idle_inbox_holds_no_deque_or_waiter_list() -> None:
    async def scenario() -> Inbox:
        inbox = Inbox()
        inbox.put_nowait(1)
        await inbox.get()
        getter = asyncio.ensure_future(inbox.get())
        await asyncio.sleep(0)
        getter.cancel()
        with pytest.raises(asyncio.CancelledError):
            await getter
        return inbox

    inbox = run(scenario)
    assert inbox._items is None
    assert inbox._waiters is None


def test_the_project_layer_delivers_group_messages_through_redis() -> None:
    layer = get_channel_layer()
    assert isinstance(layer, PivraPubSubChannelLayer)

    async def scenario() -> dict[str, object]:
        channel = await layer.new_channel()
        await layer.group_add("inbox-probe", channel)
        await layer.group_send("inbox-probe", {"type": "pivra.event", "frame": {"seq": 1}})
        return await asyncio.wait_for(layer.receive(channel), 5)

    assert async_to_sync(scenario)() == {"type": "pivra.event", "frame": {"seq": 1}}


def _dead_url() -> str:
    with socket.socket() as probe:  # a port the kernel just handed out and nobody listens on
        probe.bind(("127.0.0.1", 0))
        return f"redis://127.0.0.1:{probe.getsockname()[1]}/0"


def test_a_channel_or_membership_whose_subscribe_failed_is_not_kept() -> None:
    """Redis away: every socket connect attempt fails in new_channel (or a join in group_add), and
    none of them may stay in the process's layer."""
    layer = PivraPubSubChannelLayer(hosts=[_dead_url()], prefix="dead")

    async def scenario() -> tuple[dict[str, Any], dict[str, Any]]:
        for _ in range(3):
            with pytest.raises(Exception) as refused:
                await layer.new_channel()
            assert is_unavailable(refused.value)
        loop_layer = layer._get_layer()
        loop_layer.channels["dead.specific.probe"] = Inbox()  # as if made before Redis went away
        with pytest.raises(Exception) as refused:
            await layer.group_add("probe", "dead.specific.probe")
        assert is_unavailable(refused.value)
        del loop_layer.channels["dead.specific.probe"]
        return dict(loop_layer.channels), dict(loop_layer.groups)

    assert run(scenario) == ({}, {})
