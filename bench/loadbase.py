"""What every load-generating client process shares: the server's address and an HTTP pool, the
visitor's session and socket hello, agent logins, and small helpers (file limits, RSS, bounded
gathers). ``bench.loadgen`` (the measured phases) and ``bench.chaosclients`` (the soak) build on it.
"""

from __future__ import annotations

import asyncio
import resource
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Any, TypeVar

from bench.httpclient import Agent, ConnectionPool, HttpConnection, HttpError, Response
from bench.wsclient import WebSocket, ws_connect

T = TypeVar("T")
WS_PATH = "/ws/widget/"


def raise_nofile_limit() -> int:
    """Soft RLIMIT_NOFILE up to the hard limit (thousands of sockets); returns the new soft limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if hard == resource.RLIM_INFINITY:
        hard = 1 << 20
    if soft != resource.RLIM_INFINITY and soft < hard:
        resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
        soft = hard
    return int(soft)


def rss_kb(pid: int) -> int:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    raise RuntimeError(f"no VmRSS for pid {pid}")


def total_rss_kb(pids: Iterable[int]) -> int:
    """Resident memory of several processes together (every web process of the app)."""
    return sum(rss_kb(pid) for pid in pids)


async def bounded_gather(items: Iterable[T], worker: Callable[[T], Awaitable[Any]], concurrency: int) -> list[Any]:
    """Run ``worker`` over ``items`` with at most ``concurrency`` at once; results (or exceptions) in order."""
    semaphore = asyncio.Semaphore(concurrency)

    async def one(item: T) -> Any:
        async with semaphore:
            return await worker(item)

    return await asyncio.gather(*(one(item) for item in items), return_exceptions=True)


@dataclass
class Visitor:
    token: str
    visitor_id: str
    conversation: str
    last_seq: int
    ws: WebSocket | None = None
    agent: Agent | None = None


class Client:
    """The app under load: its address, its widget key, the agents' password and a keep-alive pool."""

    def __init__(self, config: dict[str, Any]) -> None:
        self.host: str = config["host"]
        self.port: int = config["port"]
        self.origin = f"http://{self.host}:{self.port}"
        self.public_key: str = config["public_key"]
        self.password: str = config["password"]
        self.pool = ConnectionPool(self.host, self.port, config.get("pool_size", 64))
        self.agents: list[Agent] = []

    async def cmd_login(self, usernames: list[str]) -> dict[str, Any]:
        """Sign in each agent not signed in yet, in order. Idempotent: a second call (a soak's setup
        after the bench's login, a retry after a failed login) signs in only who is missing, so
        ``agents`` never holds one user twice — the claim storm's claimers must be distinct users."""
        conn = HttpConnection(self.host, self.port)
        started = time.monotonic()
        signed_in = {agent.username for agent in self.agents}
        try:
            for username in dict.fromkeys(usernames):  # a name listed twice is one agent
                if username in signed_in:
                    continue
                agent = Agent(username)
                await agent.login(conn, self.password)
                self.agents.append(agent)
                signed_in.add(username)
        finally:
            conn.close()
        return {"agents": len(self.agents), "seconds": round(time.monotonic() - started, 2)}


class LoadBase(Client):
    """The building blocks of the bench's load phases."""

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        # Every web process of the app (idle-socket memory is their sum); one pid from older callers.
        self.daphne_pids: list[int] = list(config.get("daphne_pids") or [config["daphne_pid"]])
        self.source_index = 0

    @property
    def daphne_pid(self) -> int:
        return self.daphne_pids[0]

    async def session(self) -> Visitor:
        reply = await self.pool.request(
            "POST",
            "/api/widget/session",
            json_body={"public_key": self.public_key, "token": None, "locale": "en-US", "page": None},
        )
        if reply.status != 200:
            raise HttpError(f"widget session: HTTP {reply.status} {reply.body[:200]!r}")
        data = reply.json()
        state = data["state"]
        return Visitor(data["token"], data["visitor"], state["conversation"], state["last_seq"])

    def next_source(self, per_address: int = 2000) -> tuple[str, int]:
        """Spread client sockets over 127.0.0.2… so no one source address runs out of ephemeral ports."""
        address = f"127.0.0.{2 + self.source_index // per_address}"
        self.source_index += 1
        return (address, 0)

    async def connect(
        self, visitor: Visitor, on_frame: Callable[[WebSocket, dict[str, Any], float], None] | None
    ) -> float:
        """Open the visitor's socket and say hello; returns seconds from TCP connect to ``welcome``."""
        started = time.monotonic()
        ws = await ws_connect(
            self.host, self.port, WS_PATH, origin=self.origin, on_frame=on_frame, local_addr=self.next_source()
        )
        welcome = ws.expect(lambda f: f.get("type") in ("welcome", "error"))
        ws.send_json(
            {
                "type": "hello",
                "token": visitor.token,
                "conversation": visitor.conversation,
                "last_seq": visitor.last_seq,
            }
        )
        try:
            frame = await asyncio.wait_for(welcome, 30)
        except BaseException:
            ws.abort()
            raise
        if frame["type"] != "welcome":
            ws.abort()
            raise HttpError(f"hello refused: {frame}")
        visitor.ws = ws
        visitor.conversation = frame["state"]["conversation"]
        return time.monotonic() - started

    async def request_handoff(self, visitor: Visitor) -> float:
        """ "Talk to a human" over the socket; returns the wall time the request was sent."""
        assert visitor.ws is not None
        client_id = uuid.uuid4().hex
        ack = visitor.ws.expect(lambda f: f.get("client_id") == client_id and f.get("type") in ("ack", "error"))
        sent = time.time()
        visitor.ws.send_json({"type": "handoff.request", "client_id": client_id})
        frame = await asyncio.wait_for(ack, 30)
        if frame["type"] != "ack":
            raise HttpError(f"handoff request refused: {frame}")
        return sent

    async def claim(self, agent: Agent, conversation: str, conn: HttpConnection | None = None) -> Response:
        path = f"/api/console/handoffs/{conversation}/claim"
        if conn is not None:
            return await conn.request("POST", path, headers=agent.headers())
        return await self.pool.request("POST", path, headers=agent.headers())
