"""Agent reply → visitor socket under an open-loop schedule (figures 1 and 3), against Pivra or
against the floor reference server (``bench/floor/``) with the same schedule and the same clients.

Pivra: the reply is sent by the agent who claimed the conversation, as the dashboard's console
sends it — a ``reply`` frame on that agent's console socket (one socket per agent, answered by an
``ack``; an ``error`` answer is a failed reply), or with ``reply_via="http"`` ``POST
/api/console/handoffs/<conversation>/reply``; the visitor's socket receives an ``event`` frame.
Floor: ``POST /reply`` with the conversation's number; the visitor's socket (subscribed to it)
receives a ``reply`` frame.
Either way the frame carries the reply's ``client_id``, and latency runs from the reply's
intended send time to the frame's arrival.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from bench.consoleclient import ConsoleSocket, console_connect
from bench.httpclient import Agent, ConnectionPool, HttpError
from bench.loadbase import LoadBase, Visitor, bounded_gather
from bench.stats import summary_ms
from bench.wsclient import WebSocket, ws_connect

REPLY_TEXT = "Thanks for waiting — here is what I found about your order, it ships tomorrow."
FLOOR_WS_PATH = "/ws"
REPLY_VIA = ("socket", "http")  # how Pivra's agents send replies: console socket (the default) or console API


@dataclass
class FloorChat:
    """A visitor socket on the floor server, subscribed to one conversation (a number there)."""

    conversation: int
    ws: WebSocket | None = None


@dataclass
class Expected:
    intended: float
    visitor: Visitor | FloorChat


@dataclass
class OpenLoopRun:
    expected: dict[str, Expected] = field(default_factory=dict)
    delivered: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    misdelivered: int = 0
    unexpected: int = 0

    def frame(self, ws: WebSocket, client_id: Any, conversation: Any, received: float) -> None:
        """One reply frame arrived on ``ws``: count it once, against the reply it answers."""
        expected = self.expected.get(client_id) if isinstance(client_id, str) else None
        if expected is None or client_id is None:
            self.unexpected += 1
            return
        if client_id in self.delivered:
            self.duplicates += 1
            return
        if expected.visitor.ws is not ws or conversation != expected.visitor.conversation:
            self.misdelivered += 1
        self.delivered[client_id] = received - expected.intended


class RepliesLoad(LoadBase):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.live: list[Visitor] = []
        self.consoles: dict[str, ConsoleSocket] = {}  # agent username -> its console socket
        self.run: OpenLoopRun | None = None
        self.floor_live: list[FloorChat] = []
        self.floor_pool: ConnectionPool | None = None
        self.floor_port = 0

    # --- Pivra ------------------------------------------------------------------------------------

    async def cmd_live_conversations(self, count: int, agents: int, reply_via: str = "socket") -> dict[str, Any]:
        """Grow the set of live conversations to ``count``: a visitor socket each, escalated and
        claimed by one of the first ``agents`` agents (round robin); with ``reply_via="socket"``,
        each of those agents' console socket open too."""
        started = time.monotonic()
        needed = count - len(self.live)

        async def make(index: int) -> Visitor:
            visitor = await self.session()
            await self.connect(visitor, self._on_live_frame)
            await self.request_handoff(visitor)
            agent = self.agents[index % agents]
            reply = await self.claim(agent, visitor.conversation)
            if reply.status != 200:
                raise HttpError(f"claim: HTTP {reply.status} {reply.body[:200]!r}")
            visitor.agent = agent
            return visitor

        results = await bounded_gather(range(len(self.live), len(self.live) + needed), make, 16)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise RuntimeError(f"{len(failures)} live conversations failed to start: {failures[0]!r}")
        self.live.extend(r for r in results if isinstance(r, Visitor))
        if reply_via == "socket":
            await self._open_consoles(self.agents[:agents])
        return {"live": len(self.live), "consoles": len(self.consoles), "seconds": round(time.monotonic() - started, 2)}

    async def _open_consoles(self, agents: list[Agent]) -> None:
        for agent in agents:
            console = self.consoles.get(agent.username)
            if console is None or not console.is_open:
                self.consoles[agent.username] = await console_connect(
                    self.host, self.port, agent, local_addr=self.next_source()
                )

    def _on_live_frame(self, ws: WebSocket, frame: dict[str, Any], received: float) -> None:
        run = self.run
        if run is None or frame.get("type") != "event" or frame.get("author") != "agent":
            return
        run.frame(ws, frame.get("client_id"), frame.get("conversation"), received)

    def _pivra_sender(self, errors: list[str]) -> Callable[[Visitor | FloorChat, str], Awaitable[bool]]:
        async def send(visitor: Visitor | FloorChat, client_id: str) -> bool:
            assert isinstance(visitor, Visitor) and visitor.agent is not None
            response = await self.pool.request(
                "POST",
                f"/api/console/handoffs/{visitor.conversation}/reply",
                headers=visitor.agent.headers(),
                json_body={"client_id": client_id, "text": REPLY_TEXT},
            )
            if response.status == 201:
                return True
            errors.append(f"HTTP {response.status} {response.body[:120]!r}")
            return False

        return send

    def _socket_sender(self, errors: list[str]) -> Callable[[Visitor | FloorChat, str], Awaitable[bool]]:
        async def send(visitor: Visitor | FloorChat, client_id: str) -> bool:
            assert isinstance(visitor, Visitor) and visitor.agent is not None
            console = self.consoles.get(visitor.agent.username)
            if console is None:
                raise RuntimeError(f"no console socket for {visitor.agent.username}")
            answer = await console.reply(visitor.conversation, REPLY_TEXT, client_id)
            if answer["type"] == "ack":
                return True
            errors.append(f"error {answer.get('code')}: {str(answer.get('detail'))[:120]}")
            return False

        return send

    async def cmd_close_live(self) -> dict[str, Any]:
        for console in self.consoles.values():
            console.abort()
        self.consoles = {}
        for visitor in self.live:
            if visitor.ws is not None:
                visitor.ws.abort()
        closed = len(self.live)
        self.live = []
        return {"closed": closed}

    # --- the floor --------------------------------------------------------------------------------

    async def cmd_floor_conversations(self, *, port: int, count: int, pool_size: int) -> dict[str, Any]:
        """Grow the floor's subscribed visitor sockets to ``count`` (conversations 1..count)."""
        started = time.monotonic()
        if self.floor_pool is None or self.floor_port != port:
            self.floor_port = port
            self.floor_pool = ConnectionPool(self.host, port, pool_size)
        origin = f"http://{self.host}:{port}"

        async def make(number: int) -> FloorChat:
            chat = FloorChat(conversation=number)
            ws = await ws_connect(
                self.host,
                port,
                FLOOR_WS_PATH,
                origin=origin,
                on_frame=self._on_floor_frame,
                local_addr=self.next_source(),
            )
            subscribed = ws.expect(lambda f: f.get("type") in ("subscribed", "error"))
            ws.send_json({"type": "subscribe", "conversation_id": number})
            try:
                frame = await asyncio.wait_for(subscribed, 30)
            except BaseException:
                ws.abort()
                raise
            if frame.get("type") != "subscribed" or frame.get("conversation_id") != number:
                ws.abort()
                raise HttpError(f"floor subscribe refused: {frame}")
            chat.ws = ws
            return chat

        results = await bounded_gather(range(len(self.floor_live) + 1, count + 1), make, 16)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise RuntimeError(f"{len(failures)} floor sockets failed to subscribe: {failures[0]!r}")
        self.floor_live.extend(r for r in results if isinstance(r, FloorChat))
        return {"live": len(self.floor_live), "seconds": round(time.monotonic() - started, 2)}

    def _on_floor_frame(self, ws: WebSocket, frame: dict[str, Any], received: float) -> None:
        run = self.run
        if run is None or frame.get("type") != "reply":
            return
        run.frame(ws, frame.get("client_id"), frame.get("conversation_id"), received)

    def _floor_sender(self, errors: list[str]) -> Callable[[Visitor | FloorChat, str], Awaitable[bool]]:
        pool = self.floor_pool
        assert pool is not None

        async def send(chat: Visitor | FloorChat, client_id: str) -> bool:
            assert isinstance(chat, FloorChat)
            response = await pool.request(
                "POST",
                "/reply",
                json_body={
                    "conversation_id": chat.conversation,
                    "text": REPLY_TEXT,
                    "client_id": client_id,
                    "sent_at_ns": time.time_ns(),
                },
            )
            if response.status == 200:
                return True
            errors.append(f"HTTP {response.status} {response.body[:120]!r}")
            return False

        return send

    async def cmd_close_floor(self) -> dict[str, Any]:
        for chat in self.floor_live:
            if chat.ws is not None:
                chat.ws.abort()
        closed = len(self.floor_live)
        self.floor_live = []
        return {"closed": closed}

    # --- the schedule, the same for both ----------------------------------------------------------

    async def cmd_open_loop(
        self,
        *,
        conversations: int,
        rate: float,
        duration: float,
        tag: str,
        grace: float = 10.0,
        server: str = "pivra",
        reply_via: str = "socket",
    ) -> dict[str, Any]:
        """Replies at ``rate`` per second in total, round robin over the first ``conversations``, on a
        fixed schedule that does not wait for answers (open loop); latency runs from each reply's
        intended send time to the visitor's frame. ``server``: ``pivra`` or ``floor``; ``reply_via``:
        how Pivra's agents send (``socket`` or ``http``; the floor only takes ``POST /reply``)."""
        errors: list[str] = []
        targets: list[Visitor] | list[FloorChat]
        if reply_via not in REPLY_VIA:
            raise ValueError(f"reply_via must be one of {REPLY_VIA}, not {reply_via!r}")
        if server == "floor":
            reply_via = "http"
            targets, send = self.floor_live[:conversations], self._floor_sender(errors)
            available = len(self.floor_live)
        else:
            sender = self._socket_sender if reply_via == "socket" else self._pivra_sender
            targets, send = self.live[:conversations], sender(errors)
            available = len(self.live)
        if len(targets) < conversations:
            raise RuntimeError(f"only {available} live {server} conversations, {conversations} asked")
        total = max(1, round(rate * duration))
        acks_before = sum(console.acks for console in self.consoles.values())
        run = self.run = OpenLoopRun()
        accepted: dict[str, float] = {}  # client id -> seconds to its answer (HTTP response or ack)

        async def reply(visitor: Visitor | FloorChat, client_id: str, intended: float) -> None:
            try:
                ok = await send(visitor, client_id)
            except Exception as exc:
                errors.append(repr(exc)[:200])
                return
            if ok:
                accepted[client_id] = time.monotonic() - intended

        tasks: list[asyncio.Task[None]] = []
        start = time.monotonic() + 0.05
        for index in range(total):
            intended = start + index / rate
            delay = intended - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            visitor = targets[index % len(targets)]
            client_id = f"{tag}-{index}"
            run.expected[client_id] = Expected(intended, visitor)
            tasks.append(asyncio.create_task(reply(visitor, client_id, intended)))
        schedule_end = time.monotonic()
        lag = schedule_end - (start + (total - 1) / rate)  # how far the sender fell behind its schedule
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=60)
            for task in pending:
                task.cancel()
                errors.append("reply still unanswered after 60 s")
        # Bounded wait for the frames of every accepted reply.
        give_up = time.monotonic() + grace
        while time.monotonic() < give_up and any(cid not in run.delivered for cid in accepted):  # noqa: ASYNC110 - a bounded poll
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)  # a late duplicate would arrive now
        self.run = None
        latencies = [run.delivered[cid] for cid in accepted if cid in run.delivered]
        lost = sum(1 for cid in accepted if cid not in run.delivered)
        elapsed = total / rate
        return {
            "server": server,
            "reply_via": reply_via,
            "conversations": conversations,
            "rate": rate,
            "duration_s": round(elapsed, 2),
            "sent": total,
            "accepted": len(accepted),
            # ``ack`` frames the console sockets received in this run (0 over HTTP): counted by the sockets
            "acked": sum(console.acks for console in self.consoles.values()) - acks_before if server == "pivra" else 0,
            "errors": len(errors),
            "error_sample": errors[:3],
            "delivered": len(latencies),
            "lost": lost,
            "duplicated": run.duplicates,
            "misdelivered": run.misdelivered,
            "unexpected": run.unexpected,
            "delivered_per_s": round(len(latencies) / elapsed, 1),
            "sender_lag_ms": round(lag * 1000, 1),
            **summary_ms(latencies),
            "answer": summary_ms(list(accepted.values())),  # intended send time -> 201 or ack
        }
