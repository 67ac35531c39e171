"""The test-only hook that makes a process lose one chosen push (pivra/push_drop.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
import redis
from asgiref.sync import async_to_sync
from django.conf import settings

from pivra import push_drop
from pivra.channel_layer import PivraPubSubChannelLayer


def _layer() -> PivraPubSubChannelLayer:
    return PivraPubSubChannelLayer(hosts=[settings.REDIS_URL], prefix="drop-probe")


def _event(seq: int) -> dict[str, Any]:
    return {"type": "pivra.event", "frame": {"type": "event", "conversation": "c", "seq": seq}}


def _deliver(layer: PivraPubSubChannelLayer, group: str, seqs: list[int]) -> list[int]:
    """Send events 1..n to a group with two local members; the seqs the first member received."""

    async def scenario() -> list[int]:
        first, second = await layer.new_channel(), await layer.new_channel()
        await layer.group_add(group, first)
        await layer.group_add(group, second)
        for seq in seqs:
            await layer.group_send(group, _event(seq))
        await layer.group_send(group, {"type": "pivra.event", "frame": {"type": "end"}})
        got: list[int] = []
        for channel in (first, second):
            received: list[int] = []
            while (message := await asyncio.wait_for(layer.receive(channel), 5))["frame"]["type"] != "end":
                received.append(message["frame"]["seq"])
            got = got or received
            assert received == got  # every local member of the group loses the same push
        return got

    return async_to_sync(scenario)()


def test_an_armed_push_is_dropped_once_for_that_group_only(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push_drop, "ENABLED", True)
    client = redis.Redis.from_url(settings.REDIS_URL)
    push_drop.arm(client=client, group="visitor.a", seq=2)
    layer = _layer()
    assert _deliver(layer, "visitor.b", [1, 2, 3]) == [1, 2, 3]  # another group: untouched
    assert _deliver(layer, "visitor.a", [1, 2, 3]) == [1, 3]
    assert _deliver(layer, "visitor.a", [2]) == [2]  # it fired once
    assert not client.exists(push_drop.drop_key(group="visitor.a", seq=2))


def test_without_the_variable_the_hook_is_not_even_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(push_drop, "ENABLED", False)
    client = redis.Redis.from_url(settings.REDIS_URL)
    push_drop.arm(client=client, group="visitor.c", seq=1)
    try:
        assert _deliver(_layer(), "visitor.c", [1, 2]) == [1, 2]
    finally:
        client.delete(push_drop.drop_key(group="visitor.c", seq=1))
