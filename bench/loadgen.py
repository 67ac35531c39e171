"""The load generator: a separate process (no Django) that plays visitors and agents over loopback.

The orchestrator (``bench.cli``) sends it one command at a time over a pipe; it answers with a
picklable result. Its asyncio loop keeps running between commands, so open sockets keep answering
the server's pings and receiving frames while the orchestrator does something else (such as killing
the Celery worker). Every wait is bounded. The commands live in one module per phase family:
``bench.load_replies`` (figures 1 and 3, Pivra and the floor), ``bench.load_handoffs`` (4 and 5),
``bench.load_idle`` (2).
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from multiprocessing.connection import Connection
from typing import Any

from bench.load_handoffs import HandoffLoad
from bench.load_idle import IdleLoad
from bench.load_replies import Expected, FloorChat, OpenLoopRun, RepliesLoad
from bench.loadbase import WS_PATH, Visitor, bounded_gather, raise_nofile_limit, rss_kb

__all__ = [
    "WS_PATH",
    "Expected",
    "FloorChat",
    "LoadGenerator",
    "OpenLoopRun",
    "Visitor",
    "bounded_gather",
    "event_loop_name",
    "main",
    "raise_nofile_limit",
    "rss_kb",
]


class LoadGenerator(RepliesLoad, HandoffLoad, IdleLoad):
    """Every command of the load process (``cmd_<name>``)."""


async def serve(conn: Connection, config: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    generator = LoadGenerator(config)
    while True:
        message = await loop.run_in_executor(None, conn.recv)
        command, params = message
        if command == "stop":
            conn.send(("ok", None))
            break
        handler = getattr(generator, f"cmd_{command}", None)
        try:
            if handler is None:
                raise RuntimeError(f"unknown command {command!r}")
            result = await handler(**params)
            conn.send(("ok", result))
        except BaseException as exc:
            conn.send(("error", "".join(traceback.format_exception(exc))))
            if not isinstance(exc, Exception):
                raise
    generator.pool.close()
    if generator.floor_pool is not None:
        generator.floor_pool.close()
    clients: list[Visitor | FloorChat] = [*generator.live, *generator.timeout_visitors, *generator.floor_live]
    for client in clients:
        if client.ws is not None:
            client.ws.abort()
    for ws in generator.idle:
        ws.abort()
    for console in generator.consoles.values():
        console.abort()


def event_loop_name() -> str:
    """uvloop when installed (the bench extra): the load process then takes less of the CPU the
    servers under test share with it, and can offer the floor's rates (thousands per second)."""
    try:
        import uvloop  # noqa: F401
    except ImportError:
        return "asyncio"
    return "uvloop"


def main(conn: Connection, config: dict[str, Any]) -> None:
    """Entry point of the load process (``multiprocessing``, spawn start method)."""
    raise_nofile_limit()
    factory = None
    if event_loop_name() == "uvloop":
        import uvloop

        factory = uvloop.new_event_loop
    with contextlib.suppress(KeyboardInterrupt), asyncio.Runner(loop_factory=factory) as runner:
        runner.run(serve(conn, config))
    conn.close()
