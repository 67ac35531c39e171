"""The console socket keeps its agent present: a lease at connect (announced to the teammates'
consoles), released at close into the grace period. Against the real ASGI app and Redis."""

from __future__ import annotations

import time

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator

from chatbots import presence
from chatbots.availability import presence_sweep
from chatbots.presence import online_agent_ids, present_user_ids
from pivra.asgi import application
from tests.test_console_socket import _connect, _headers, _until, _world

pytestmark = pytest.mark.django_db(transaction=True)


async def test_a_console_socket_makes_its_agent_online_and_teammates_hear_of_it(settings) -> None:
    settings.PRESENCE_GRACE_SECONDS = 60
    world = await sync_to_async(_world)()
    ws = world.workspace.pk
    assert await sync_to_async(online_agent_ids)(workspace_id=ws) == set()
    owner_socket, _ = await _connect(world.owner)
    teammate_socket, _ = await _connect(world.teammate)
    frame = await _until(owner_socket, lambda f: f["type"] == "presence")
    assert frame == {"type": "presence", "workspace": ws}
    assert await sync_to_async(online_agent_ids)(workspace_id=ws) == {world.owner.pk, world.teammate.pk}
    assert await sync_to_async(online_agent_ids)(workspace_id=world.other_workspace.pk) == set()

    await teammate_socket.disconnect()
    # Closed, but within the grace: a reload is not a departure.
    assert world.teammate.pk in await sync_to_async(present_user_ids)(workspace_id=ws)
    # Past the grace the sweep drops the lease and tells the workspace's consoles.
    departed = await sync_to_async(presence_sweep)(now=time.time() + 61)
    assert departed >= 1  # other tests' sockets of other workspaces may be swept too
    assert await sync_to_async(present_user_ids)(workspace_id=ws, now=time.time() + 61) == {world.owner.pk}
    assert (await _until(owner_socket, lambda f: f["type"] == "presence"))["workspace"] == ws
    await owner_socket.disconnect()


async def test_a_user_past_the_socket_cap_is_closed_with_4429_and_a_closed_socket_frees_its_place(
    settings, monkeypatch
) -> None:
    """One user cannot open console sockets without bound (each costs presence refreshes in Redis)."""
    monkeypatch.setattr(presence, "MAX_SOCKETS_PER_USER", 2)
    world = await sync_to_async(_world)()
    first, _ = await _connect(world.teammate)
    second, _ = await _connect(world.teammate)
    owner, _ = await _connect(world.owner)  # the cap is per user: a teammate is not refused
    third = WebsocketCommunicator(application, "/ws/console/", headers=await sync_to_async(_headers)(world.teammate))
    connected, _ = await third.connect()
    assert connected  # accepted only so the page can read why
    assert await third.receive_output(timeout=5) == {"type": "websocket.close", "code": 4429}
    await third.disconnect(code=4429)
    await first.disconnect()
    again, _ = await _connect(world.teammate)  # a closed tab frees its place at once
    for socket in (second, owner, again):
        await socket.disconnect()
