"""The chaos soak's clients, in their own process (spawned, no Django): widget visitors and the
agents who answer them, speaking the protocol the real widget and console speak.

A visitor keeps one WebSocket, reconnects with backoff and says hello with its highest
*contiguous* seq; an event or an ack past a gap is held and the gap fetched with
``GET /api/widget/events?after_seq=``, so events are shown once each, in seq order. Every request
is retried with the same client id until it is accepted: after ``Retry-After`` on a 503 (or 429),
after a backoff on a broken connection or any other 5xx (those are recorded as errors).
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import time
import traceback
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any

from bench.httpclient import Agent, Response
from bench.loadbase import WS_PATH, Client, bounded_gather, raise_nofile_limit
from bench.wsclient import WebSocket, ws_connect

GIVE_UP_S = 120.0  # a request still refused after this long is counted as given up
HELLO_TIMEOUT_S = 15.0  # as the widget: no welcome by then, the socket is dropped
TRANSIENT = (OSError, EOFError, RuntimeError, ConnectionError)  # refused, reset, timed out, bad handshake


class Refused(RuntimeError):
    """A 4xx other than 429: the request is wrong, retrying cannot help."""


def backoff(attempt: int, rng: random.Random) -> float:
    """The widget's reconnect backoff (static/widget/chat/util.js): 0.5 s doubling to 10 s, half jitter."""
    return min(10.0, 0.5 * 2 ** min(attempt, 5)) * rng.uniform(0.5, 1.0)


def retry_after(response: Response) -> float:
    try:
        return max(0.2, min(10.0, float(response.headers.get("retry-after", "1"))))
    except ValueError:
        return 1.0


@dataclass
class Chat:
    """One widget: its visitor, conversation, agent and what it has shown."""

    index: int
    token: str
    conversation: str
    agent: Agent | None = None
    contiguous: int = 0
    shown: list[tuple[int, float, str, str | None, str]] = field(default_factory=list)  # seq, wall, kind, id, how
    shown_seqs: set[int] = field(default_factory=set)
    held: dict[int, dict[str, Any]] = field(default_factory=dict)  # past a gap, waiting for it
    ws: WebSocket | None = None
    welcomed: asyncio.Event = field(default_factory=asyncio.Event)
    fetching: bool = False
    refetch: bool = False
    welcomes: list[float] = field(default_factory=list)  # when each socket was welcomed

    def bearer(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}"}


@dataclass
class Stats:
    statuses: Counter[str] = field(default_factory=Counter)  # "route status" -> answers
    transport_errors: Counter[str] = field(default_factory=Counter)  # route -> broken connections
    server_errors: list[dict[str, Any]] = field(default_factory=list)  # 5xx other than 503
    refused: list[dict[str, Any]] = field(default_factory=list)  # 4xx (not 429) and give-ups
    hello_failures: Counter[str] = field(default_factory=Counter)
    connect_failures: int = 0
    reconnects: int = 0
    gap_fetches: int = 0
    held_past_gap: int = 0
    redelivered: int = 0  # frames for a seq already shown (dropped by seq, as the widget does)
    sent: Counter[str] = field(default_factory=Counter)


class Soak(Client):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.rng = random.Random(config["seed"])
        self.chats: list[Chat] = []
        self.acked: dict[str, int] = {}  # conversation -> highest seq any request was answered with
        self.reply_acked_at: dict[str, float] = {}  # an agent reply's client id -> when its 201 came
        self.stats = Stats()
        self.started_wall = time.time()
        self.stopping = False
        self.tasks: set[asyncio.Task[Any]] = set()

    def spawn(self, coroutine: Awaitable[Any]) -> None:
        task = asyncio.ensure_future(coroutine)
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    # --- requests -------------------------------------------------------------------------------

    async def http(
        self, route: str, method: str, path: str, *, ok: tuple[int, ...] = (200,), **kwargs: Any
    ) -> Response:
        """One request, retried (same body, same client id) until it is answered ``ok``."""
        started, attempt = time.monotonic(), 0
        while True:
            try:
                response = await self.pool.request(method, path, **kwargs)
            except TRANSIENT:
                self.stats.transport_errors[route] += 1
                wait = backoff(attempt, self.rng)
            else:
                self.stats.statuses[f"{route} {response.status}"] += 1
                if response.status in ok:
                    return response
                if response.status in (429, 503):
                    wait = retry_after(response)
                elif response.status >= 500:
                    self.stats.server_errors.append(
                        {
                            "route": route,
                            "path": path.split("?", 1)[0],
                            "status": response.status,
                            "at_s": round(time.time() - self.started_wall, 2),
                            "body": response.body[:300].decode(errors="replace"),
                        }
                    )
                    wait = backoff(attempt, self.rng)
                else:
                    raise Refused(f"{route}: HTTP {response.status} {response.body[:200]!r}")
            if time.monotonic() - started > GIVE_UP_S:
                raise Refused(f"{route}: still failing after {GIVE_UP_S:.0f} s")
            attempt += 1
            await asyncio.sleep(wait)

    # --- what the widget shows ------------------------------------------------------------------

    def receive(self, chat: Chat, frame: dict[str, Any], wall: float, how: str) -> None:
        """An event (``how``: "socket" pushed or replayed, "fetch" of a gap, or "ack" of our own
        message): shown once, in seq order."""
        seq = frame.get("seq")
        if not isinstance(seq, int) or frame.get("conversation") != chat.conversation:
            return
        if seq in chat.shown_seqs or seq in chat.held:
            self.stats.redelivered += 1
            return
        if seq != chat.contiguous + 1:
            chat.held[seq] = {**frame, "how": how}
            self.stats.held_past_gap += 1
            self.fetch_gap(chat)
            return
        self._show(chat, frame, wall, how)
        while chat.contiguous + 1 in chat.held:
            held = chat.held.pop(chat.contiguous + 1)
            self._show(chat, held, wall, f"{held['how']} after gap")

    def _show(self, chat: Chat, frame: dict[str, Any], wall: float, how: str) -> None:
        seq = int(frame["seq"])
        chat.shown.append((seq, wall, str(frame.get("kind", "")), frame.get("client_id"), how))
        chat.shown_seqs.add(seq)
        chat.contiguous = max(chat.contiguous, seq)

    def fetch_gap(self, chat: Chat) -> None:
        if chat.fetching:
            chat.refetch = True
            return
        chat.fetching = True
        self.spawn(self._fetch(chat))

    async def _fetch(self, chat: Chat) -> None:
        try:
            for _ in range(30):  # an event past a gap that never fills: give up, the next frame retries
                chat.refetch = False
                self.stats.gap_fetches += 1
                try:
                    response = await self.http(
                        "widget events",
                        "GET",
                        f"/api/widget/events?conversation={chat.conversation}&after_seq={chat.contiguous}",
                        headers=chat.bearer(),
                    )
                except Refused as exc:
                    self.stats.refused.append({"route": "widget events", "detail": str(exc)[:300]})
                    return
                wall = time.time()
                for event in response.json()["events"]:
                    self.receive(chat, event, wall, "fetch")
                if not chat.held and not chat.refetch:
                    return
                await asyncio.sleep(0.5)
        finally:
            chat.fetching = False

    def on_frame(self, chat: Chat, ws: WebSocket, frame: dict[str, Any], received: float) -> None:
        kind = frame.get("type")
        if kind == "event":
            self.receive(chat, frame, time.time() - (time.monotonic() - received), "socket")
        elif kind == "resync":
            self.fetch_gap(chat)

    async def keep_connected(self, chat: Chat) -> None:
        attempt = 0
        while not self.stopping:
            try:
                ws = await ws_connect(
                    self.host,
                    self.port,
                    WS_PATH,
                    origin=self.origin,
                    on_frame=lambda ws, frame, t: self.on_frame(chat, ws, frame, t),
                    connect_timeout=10,
                )
            except TRANSIENT:
                self.stats.connect_failures += 1
                await asyncio.sleep(backoff(attempt, self.rng))
                attempt += 1
                continue
            welcome = ws.expect(lambda f: f.get("type") in ("welcome", "error"))
            hello = {"type": "hello", "token": chat.token, "conversation": chat.conversation}
            ws.send_json({**hello, "last_seq": chat.contiguous})
            try:
                frame: dict[str, Any] | None = await asyncio.wait_for(welcome, HELLO_TIMEOUT_S)
            except (TimeoutError, ConnectionError):
                frame = None
            if frame is None or frame.get("type") != "welcome":
                reason = f"{frame.get('code')}: {str(frame.get('detail', ''))[:60]}" if frame else "no welcome"
                self.stats.hello_failures[reason] += 1
                ws.abort()
                await asyncio.sleep(backoff(attempt, self.rng))
                attempt += 1
                continue
            attempt = 0
            chat.ws = ws
            chat.welcomes.append(time.time())
            chat.welcomed.set()
            await ws.closed
            chat.ws = None
            if not self.stopping:
                self.stats.reconnects += 1
                await asyncio.sleep(backoff(0, self.rng))

    # --- commands -------------------------------------------------------------------------------

    async def cmd_setup(self, *, conversations: int, usernames: list[str]) -> dict[str, Any]:
        started = time.monotonic()
        await self.cmd_login(usernames)

        async def make(index: int) -> Chat:
            body = {"public_key": self.public_key, "token": None, "locale": "en-US", "page": None}
            data = (await self.http("widget session", "POST", "/api/widget/session", json_body=body)).json()
            chat = Chat(index=index, token=data["token"], conversation=data["state"]["conversation"])
            self.spawn(self.keep_connected(chat))
            await asyncio.wait_for(chat.welcomed.wait(), 60)
            asked = await self.http(
                "widget handoff",
                "POST",
                "/api/widget/handoff",
                headers=chat.bearer(),
                json_body={"client_id": uuid.uuid4().hex},
            )
            self.note_acked(chat, int(asked.json()["seq"]))
            chat.agent = self.agents[index % len(self.agents)]
            path = f"/api/console/handoffs/{chat.conversation}/claim"
            await self.http("console claim", "POST", path, headers=chat.agent.headers())
            return chat

        results = await bounded_gather(range(conversations), make, 16)
        failures = [r for r in results if isinstance(r, BaseException)]
        if failures:
            raise RuntimeError(f"{len(failures)} chaos conversations failed to start: {failures[0]!r}")
        self.chats = [r for r in results if isinstance(r, Chat)]
        caught_up = await self.settle(30.0)
        return {
            "conversations": len(self.chats),
            "agents": len(self.agents),
            "caught_up": caught_up,
            "seconds": round(time.monotonic() - started, 2),
        }

    def note_acked(self, chat: Chat, seq: int) -> None:
        self.acked[chat.conversation] = max(self.acked.get(chat.conversation, 0), seq)

    async def cmd_run(self, *, duration: float, interval: float, settle: float) -> dict[str, Any]:
        """Both sides of every conversation send for ``duration`` seconds (one message every
        ``interval`` on average each, the next only once the last was accepted); then wait up to
        ``settle`` seconds for every client to show what it was acknowledged."""
        self.started_wall = time.time()
        end = time.monotonic() + duration

        async def visitor_side(chat: Chat) -> None:
            await self.send_loop(chat, end, interval, self.visitor_send)

        async def agent_side(chat: Chat) -> None:
            await self.send_loop(chat, end, interval, self.agent_send)

        await asyncio.gather(*(visitor_side(c) for c in self.chats), *(agent_side(c) for c in self.chats))
        sending_done = time.time()
        caught_up = await self.settle(settle)
        settled = time.time()
        await asyncio.sleep(2.0)  # anything still on its way
        return {
            "started_wall": self.started_wall,
            "sending_done_wall": sending_done,
            "settle_s": round(settled - sending_done, 2),
            "caught_up": caught_up,
            "reply_acked_at": self.reply_acked_at,
            "chats": [
                {
                    "conversation": c.conversation,
                    "shown": c.shown,
                    "held": sorted(c.held),
                    "contiguous": c.contiguous,
                    "acked": self.acked.get(c.conversation, 0),
                    "welcomes": [round(w - self.started_wall, 3) for w in c.welcomes if w >= self.started_wall],
                }
                for c in self.chats
            ],
            "stats": {
                "statuses": dict(sorted(self.stats.statuses.items())),
                "transport_errors": dict(self.stats.transport_errors),
                "server_errors": self.stats.server_errors,
                "refused": self.stats.refused,
                "hello_failures": dict(self.stats.hello_failures),
                "connect_failures": self.stats.connect_failures,
                "reconnects": self.stats.reconnects,
                "gap_fetches": self.stats.gap_fetches,
                "held_past_gap": self.stats.held_past_gap,
                "redelivered_frames": self.stats.redelivered,
                "sent": dict(self.stats.sent),
            },
        }

    async def send_loop(
        self, chat: Chat, end: float, interval: float, send: Callable[[Chat, int], Awaitable[None]]
    ) -> None:
        await asyncio.sleep(self.rng.uniform(0, interval))
        number = 0
        while time.monotonic() < end:
            try:
                await send(chat, number)
            except Refused as exc:
                self.stats.refused.append({"conversation": chat.conversation, "detail": str(exc)[:300]})
            number += 1
            await asyncio.sleep(self.rng.uniform(0.5, 1.5) * interval)

    async def visitor_send(self, chat: Chat, number: int) -> None:
        client_id = f"v{chat.index}-{number}-{uuid.uuid4().hex[:8]}"
        body = {"client_id": client_id, "text": f"Visitor message {number}: is my order on its way?"}
        response = await self.http(
            "widget message", "POST", "/api/widget/messages", headers=chat.bearer(), json_body=body
        )
        self.stats.sent["visitor"] += 1
        seq = int(response.json()["seq"])
        self.note_acked(chat, seq)
        # The widget shows its own message at the ack (an ack past a gap fetches the gap).
        ack = {"seq": seq, "conversation": chat.conversation, "kind": "message", "client_id": client_id}
        self.receive(chat, ack, time.time(), "ack")

    async def agent_send(self, chat: Chat, number: int) -> None:
        assert chat.agent is not None
        client_id = f"a{chat.index}-{number}-{uuid.uuid4().hex[:8]}"
        body = {"client_id": client_id, "text": f"Agent reply {number}: it ships tomorrow."}
        path = f"/api/console/handoffs/{chat.conversation}/reply"
        response = await self.http(
            "console reply", "POST", path, ok=(201,), headers=chat.agent.headers(), json_body=body
        )
        self.stats.sent["agent"] += 1
        self.reply_acked_at[client_id] = time.time()
        self.note_acked(chat, int(response.json()["seq"]))

    async def settle(self, limit: float) -> bool:
        """Until every client shows all it was acknowledged (at most ``limit`` seconds)."""
        deadline = time.monotonic() + limit
        while time.monotonic() < deadline:
            if all(c.contiguous >= self.acked.get(c.conversation, 0) and not c.held for c in self.chats):
                return True
            await asyncio.sleep(0.25)
        return False

    def close(self) -> None:
        self.stopping = True
        for chat in self.chats:
            if chat.ws is not None:
                chat.ws.abort()
        for task in list(self.tasks):
            task.cancel()
        self.pool.close()


async def serve(conn: Connection, config: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    soak = Soak(config)
    try:
        while True:
            command, params = await loop.run_in_executor(None, conn.recv)
            if command == "stop":
                conn.send(("ok", None))
                break
            try:
                handler = getattr(soak, f"cmd_{command}")
                conn.send(("ok", await handler(**params)))
            except Exception as exc:
                conn.send(("error", "".join(traceback.format_exception(exc))))
    finally:
        soak.close()
        await asyncio.sleep(0)


def main(conn: Connection, config: dict[str, Any]) -> None:
    """Entry point of the chaos clients' process (``multiprocessing``, spawn start method)."""
    raise_nofile_limit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(conn, config))
    conn.close()
