"""Clients for the two-process tests (tests/test_web_processes.py): an agent on the console API over
one HTTP connection, and a widget that reconnects and replays by seq as static/widget/chat does.

Each connection is placed on a chosen daphne process: the kernel picks the accepting process, so a
client connects, asks /proc which process holds the server side, and tries again until it is the
one wanted (tests/proc_sockets.py).
"""

from __future__ import annotations

import asyncio
import http.client
import json
import re
import socket
import time
from collections.abc import Callable
from typing import Any

import httpx

from bench.wsclient import WebSocket
from tests.proc_sockets import wait_for_holder

PLACEMENT_TRIES = 200


def holder_of(sock: socket.socket, pids: list[int], port: int) -> int | None:
    """The pid holding ``sock``'s server side, once some process has accepted it (None after 5 s)."""
    return wait_for_holder(pids, server_port=port, client_port=sock.getsockname()[1])


def placed_socket(port: int, *, pids: list[int], want: int) -> socket.socket:
    """A TCP connection to the shared address that process ``want`` accepted."""
    for _ in range(PLACEMENT_TRIES):
        sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        if holder_of(sock, pids, port) == want:
            return sock
        sock.close()
    raise AssertionError(f"no connection landed on pid {want} in {PLACEMENT_TRIES} tries")


async def until(condition: Callable[[], bool], *, seconds: float, what: str) -> None:
    deadline = time.monotonic() + seconds
    while True:
        if condition():
            return
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {seconds:g} s: {what}")
        await asyncio.sleep(0.05)


class Agent:
    """An agent signed in through the login page, replying over one kept-alive HTTP connection."""

    def __init__(self, base: str, username: str, password: str) -> None:
        self.base = base
        with httpx.Client(base_url=base, timeout=10, follow_redirects=True) as client:
            page = client.get("/accounts/login/")
            token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
            assert token, page.text[:300]
            client.post(
                "/accounts/login/",
                data={"csrfmiddlewaretoken": token.group(1), "username": username, "password": password},
                headers={"Referer": str(page.url)},
            )
            self.cookies = dict(client.cookies.items())
        assert "sessionid" in self.cookies, "the agent could not sign in"
        self.port = int(base.rsplit(":", 1)[1])
        self.connection: http.client.HTTPConnection | None = None

    def use(self, sock: socket.socket) -> None:
        """Send the next requests over ``sock`` (a connection placed on one process)."""
        self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        self.connection.sock = sock

    def post(self, path: str, body: dict[str, Any] | None = None) -> tuple[int, dict[str, Any]]:
        if self.connection is None:
            self.connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        headers = {
            "Cookie": "; ".join(f"{k}={v}" for k, v in self.cookies.items()),
            "X-CSRFToken": self.cookies["csrftoken"],
            "Content-Type": "application/json",
        }
        try:
            self.connection.request("POST", f"/api/console{path}", body=json.dumps(body or {}), headers=headers)
            response = self.connection.getresponse()
            return response.status, json.loads(response.read() or b"{}")
        except (OSError, http.client.HTTPException):
            self.connection.close()
            self.connection = None  # the next call opens a new connection (a kill ended this one)
            raise


def new_widget_visitor(base: str, public_key: str) -> tuple[str, str]:
    """(token, conversation) of a new visitor waiting for a human."""
    session = httpx.post(f"{base}/api/widget/session", json={"public_key": public_key}, timeout=10).json()
    token, conversation = session["token"], session["state"]["conversation"]
    headers = {"Authorization": f"Bearer {token}"}
    asked = httpx.post(f"{base}/api/widget/handoff", json={"client_id": "h"}, headers=headers, timeout=10)
    assert asked.status_code == 200, asked.text
    return token, conversation


class WidgetClient:
    """The widget's socket logic: hello with the highest contiguous seq, events shown once by seq,
    a hole fetched with ``GET /api/widget/events?after_seq=``, reconnect with backoff when closed."""

    def __init__(self, *, base: str, token: str, conversation: str, pids: list[int]) -> None:
        self.base, self.token, self.conversation, self.pids = base, token, conversation, pids
        self.port = int(base.rsplit(":", 1)[1])
        self.shown: dict[int, dict[str, Any]] = {}  # seq → event, each applied once
        self.frames: list[int] = []  # every event seq as it arrived (duplicates included)
        self.holders: list[int | None] = []  # the process holding each of this client's sockets
        self.gap_fetches = 0
        self.ws: WebSocket | None = None
        self.welcomed = asyncio.Event()
        self._fetching = False
        self._running = True
        self._task: asyncio.Task[None] | None = None

    @property
    def contiguous(self) -> int:
        seq = 0
        while seq + 1 in self.shown:
            seq += 1
        return seq

    async def start(self, *, want: int) -> None:
        """Open the first socket on process ``want``, then keep one open until ``stop()``."""
        sock = await asyncio.to_thread(placed_socket, self.port, pids=self.pids, want=want)
        await self._open(sock, holder=want)
        self._task = asyncio.create_task(self._keep_open())

    async def stop(self) -> None:
        self._running = False
        if self.ws is not None:
            self.ws.abort()
        if self._task is not None:
            await asyncio.gather(self._task, return_exceptions=True)

    async def _open(self, sock: socket.socket, *, holder: int | None) -> None:
        loop = asyncio.get_running_loop()
        sock.setblocking(False)
        origin = self.base
        _, ws = await loop.create_connection(
            lambda: WebSocket(host=f"127.0.0.1:{self.port}", path="/ws/widget/", origin=origin, on_frame=self._frame),
            sock=sock,
        )
        await asyncio.wait_for(asyncio.shield(ws.opened), 15)
        self.ws, self.welcomed = ws, asyncio.Event()
        self.holders.append(holder)
        welcome = ws.expect(lambda frame: frame.get("type") == "welcome")
        ws.send_json(
            {"type": "hello", "token": self.token, "conversation": self.conversation, "last_seq": self.contiguous}
        )
        await asyncio.wait_for(welcome, 15)
        self.welcomed.set()

    async def _keep_open(self) -> None:
        delay = 0.2
        while self._running:
            assert self.ws is not None
            await self.ws.closed
            if not self._running:
                return
            await asyncio.sleep(delay)
            try:
                sock = await asyncio.to_thread(socket.create_connection, ("127.0.0.1", self.port), 10)
                holder = await asyncio.to_thread(holder_of, sock, self.pids, self.port)
                await self._open(sock, holder=holder)
                delay = 0.2
            except (TimeoutError, OSError, ConnectionError):
                delay = min(delay * 2, 2.0)

    def _frame(self, ws: WebSocket, frame: dict[str, Any], received: float) -> None:
        if frame.get("type") == "event" and frame.get("conversation") == self.conversation:
            self.frames.append(int(frame["seq"]))
            self._show([frame])
        elif frame.get("type") == "resync":
            self._schedule_fetch(0.0, after=0)
        elif frame.get("type") in ("state", "welcome") and int(frame["state"].get("last_seq") or 0) > self.contiguous:
            self._schedule_fetch(1.0)

    def _show(self, events: list[dict[str, Any]]) -> None:
        for event in events:
            self.shown.setdefault(int(event["seq"]), event)
        if self.shown and max(self.shown) > self.contiguous:
            self._schedule_fetch(0.3)  # a hole: a frame that is merely late comes first

    def _schedule_fetch(self, delay: float, *, after: int | None = None) -> None:
        if self._fetching:
            return
        self._fetching = True
        asyncio.get_running_loop().call_later(delay, lambda: asyncio.ensure_future(self._fetch(after)))

    async def _fetch(self, after: int | None) -> None:
        try:
            after_seq = self.contiguous if after is None else after
            if after is None and (not self.shown or max(self.shown) <= after_seq):
                return  # the late frame came: nothing to fetch
            self.gap_fetches += 1
            async with httpx.AsyncClient(base_url=self.base, timeout=10) as client:
                response = await client.get(
                    "/api/widget/events",
                    params={"conversation": self.conversation, "after_seq": after_seq},
                    headers={"Authorization": f"Bearer {self.token}"},
                )
            if response.status_code == 200:
                self.shown.update(
                    {int(e["seq"]): e for e in response.json()["events"] if int(e["seq"]) not in self.shown}
                )
        except httpx.HTTPError:
            pass  # retried by the next frame or the final check
        finally:
            self._fetching = False
