"""The agent's console socket (``/ws/console/``) as the dashboard's console uses it: opened with the
agent's session cookie, one per agent, and commands (``reply``, ``claim``) answered by an ``ack`` or
an ``error`` frame carrying the command's ``client_id``.

Used by the bench's figures 1 and 3 (``bench.load_replies``) and by ``bench.profile_hotpath``. It
needs only ``bench.wsclient`` and ``bench.httpclient``, so it can be copied into an older tree with
the profiling script.
"""

from __future__ import annotations

import asyncio
from typing import Any, cast

from bench.httpclient import Agent, HttpError
from bench.wsclient import WebSocket

CONSOLE_PATH = "/ws/console/"


class CookieWebSocket(WebSocket):
    """The bench's client socket with the agent's cookies on the handshake."""

    cookie = ""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's transports do not subclass it
        request = (
            f"GET {self.path} HTTP/1.1\r\nHost: {self.host}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
            f"Sec-WebSocket-Key: {self._key.decode()}\r\nSec-WebSocket-Version: 13\r\nOrigin: {self.origin}\r\n"
            f"Cookie: {self.cookie}\r\n\r\n"
        )
        self.transport.write(request.encode())


class ConsoleSocket:
    """One agent's console socket. Answers are matched by ``client_id`` in a dict, not by scanning
    waiters, so thousands of commands in flight cost nothing per frame."""

    def __init__(self, agent: Agent, ws: CookieWebSocket) -> None:
        self.agent = agent
        self.ws = ws
        self.pending: dict[str, asyncio.Future[dict[str, Any]]] = {}
        self.acks = 0
        self.answer_timeout = 30.0  # seconds an ack or error may take
        self.errors = 0
        ws.on_frame = self._on_frame
        ws.closed.add_done_callback(lambda _: self._fail_pending())

    @property
    def is_open(self) -> bool:
        return self.ws.is_open

    def _on_frame(self, ws: WebSocket, frame: dict[str, Any], received: float) -> None:
        kind = frame.get("type")
        if kind not in ("ack", "error"):
            return
        waiter = self.pending.pop(str(frame.get("client_id")), None)
        if waiter is None or waiter.done():
            return
        if kind == "ack":
            self.acks += 1
        else:
            self.errors += 1
        waiter.set_result(frame)

    def _fail_pending(self) -> None:
        pending, self.pending = self.pending, {}
        for waiter in pending.values():
            if not waiter.done():
                waiter.set_exception(ConnectionError(f"console socket of {self.agent.username} closed"))

    async def command(self, frame: dict[str, Any]) -> dict[str, Any]:
        """Send a command frame (it has a ``client_id``); its ``ack`` or ``error`` frame."""
        if not self.ws.is_open:
            raise ConnectionError(f"console socket of {self.agent.username} is closed")
        client_id = str(frame["client_id"])
        waiter: asyncio.Future[dict[str, Any]] = asyncio.get_running_loop().create_future()
        self.pending[client_id] = waiter
        self.ws.send_json(frame)
        try:
            return await asyncio.wait_for(waiter, self.answer_timeout)
        finally:
            self.pending.pop(client_id, None)

    async def reply(self, conversation: str, text: str, client_id: str) -> dict[str, Any]:
        frame = {"type": "reply", "conversation_id": conversation, "text": text, "client_id": client_id}
        return await self.command(frame)

    async def claim(self, conversation: str, client_id: str) -> dict[str, Any]:
        return await self.command({"type": "claim", "conversation_id": conversation, "client_id": client_id})

    def abort(self) -> None:
        self.ws.abort()


async def console_connect(
    host: str, port: int, agent: Agent, *, local_addr: tuple[str, int] | None = None, connect_timeout: float = 30.0
) -> ConsoleSocket:
    """Open ``agent``'s console socket with its session cookie and wait for ``welcome``."""
    ws = CookieWebSocket(host=f"{host}:{port}", path=CONSOLE_PATH, origin=f"http://{host}:{port}")
    ws.cookie = "; ".join(f"{k}={v}" for k, v in agent.cookies.items())
    ws.opened.add_done_callback(lambda f: f.cancelled() or f.exception())  # a refused handshake: raised below
    greeted = ws.expect(lambda f: f.get("type") in ("welcome", "session.ended", "error"))  # before the handshake
    loop = asyncio.get_running_loop()
    try:
        await asyncio.wait_for(loop.create_connection(lambda: ws, host, port, local_addr=local_addr), connect_timeout)
        frame = await asyncio.wait_for(greeted, connect_timeout)
    except BaseException:
        ws.abort()
        raise
    if frame["type"] != "welcome":
        ws.abort()
        raise HttpError(f"console socket of {agent.username} refused: {frame}")
    return ConsoleSocket(agent, ws)
