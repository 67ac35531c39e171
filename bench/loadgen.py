"""The load generator: a separate process (no Django) that plays visitors and agents over loopback.

The orchestrator (``bench.cli``) sends it one command at a time over a pipe; it answers with a
picklable result. Its asyncio loop keeps running between commands, so open sockets keep answering
the server's pings and receiving frames while the orchestrator does something else (such as killing
the Celery worker). Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import resource
import time
import traceback
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from multiprocessing.connection import Connection
from typing import Any, TypeVar

from bench.httpclient import Agent, ConnectionPool, HttpConnection, HttpError, Response
from bench.stats import storm_summary, summary_ms
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


@dataclass
class Expected:
    intended: float
    visitor: Visitor


@dataclass
class OpenLoopRun:
    expected: dict[str, Expected] = field(default_factory=dict)
    delivered: dict[str, float] = field(default_factory=dict)
    duplicates: int = 0
    misdelivered: int = 0
    unexpected: int = 0


class LoadGenerator:
    def __init__(self, config: dict[str, Any]) -> None:
        self.host: str = config["host"]
        self.port: int = config["port"]
        self.origin = f"http://{self.host}:{self.port}"
        self.public_key: str = config["public_key"]
        self.password: str = config["password"]
        self.daphne_pid: int = config["daphne_pid"]
        self.pool = ConnectionPool(self.host, self.port, config.get("pool_size", 64))
        self.agents: list[Agent] = []
        self.live: list[Visitor] = []
        self.run: OpenLoopRun | None = None
        self.timeout_visitors: list[Visitor] = []
        self.timeout_claims: dict[str, dict[str, Any]] = {}
        self.timeout_tasks: list[asyncio.Task[None]] = []
        self.idle: list[WebSocket] = []
        self.source_index = 0

    # --- building blocks ----------------------------------------------------------------------

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

    # --- commands -------------------------------------------------------------------------------

    async def cmd_login(self, usernames: list[str]) -> dict[str, Any]:
        conn = HttpConnection(self.host, self.port)
        started = time.monotonic()
        try:
            for username in usernames:
                agent = Agent(username)
                await agent.login(conn, self.password)
                self.agents.append(agent)
        finally:
            conn.close()
        return {"agents": len(self.agents), "seconds": round(time.monotonic() - started, 2)}

    async def cmd_live_conversations(self, count: int, agents: int) -> dict[str, Any]:
        """Grow the set of live conversations to ``count``: a visitor socket each, escalated and
        claimed by one of the first ``agents`` agents (round robin)."""
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
        return {"live": len(self.live), "seconds": round(time.monotonic() - started, 2)}

    def _on_live_frame(self, ws: WebSocket, frame: dict[str, Any], received: float) -> None:
        run = self.run
        if run is None or frame.get("type") != "event" or frame.get("author") != "agent":
            return
        client_id = frame.get("client_id")
        expected = run.expected.get(client_id) if isinstance(client_id, str) else None
        if expected is None or client_id is None:
            run.unexpected += 1
            return
        if client_id in run.delivered:
            run.duplicates += 1
            return
        if expected.visitor.ws is not ws or frame.get("conversation") != expected.visitor.conversation:
            run.misdelivered += 1
        run.delivered[client_id] = received - expected.intended

    async def cmd_open_loop(
        self, *, conversations: int, rate: float, duration: float, tag: str, grace: float = 10.0
    ) -> dict[str, Any]:
        """Agents reply at ``rate`` per second in total, on a fixed schedule that does not wait for
        answers (open loop); latency runs from each reply's intended send time to the visitor's
        ``event`` frame."""
        targets = self.live[:conversations]
        if len(targets) < conversations:
            raise RuntimeError(f"only {len(self.live)} live conversations, {conversations} asked")
        total = max(1, round(rate * duration))
        run = self.run = OpenLoopRun()
        accepted: dict[str, float] = {}  # client id -> HTTP response time
        errors: list[str] = []
        text = "Thanks for waiting — here is what I found about your order, it ships tomorrow."

        async def reply(visitor: Visitor, client_id: str, intended: float) -> None:
            assert visitor.agent is not None
            try:
                response = await self.pool.request(
                    "POST",
                    f"/api/console/handoffs/{visitor.conversation}/reply",
                    headers=visitor.agent.headers(),
                    json_body={"client_id": client_id, "text": text},
                )
            except Exception as exc:
                errors.append(repr(exc)[:200])
                return
            if response.status == 201:
                accepted[client_id] = time.monotonic() - intended
            else:
                errors.append(f"HTTP {response.status} {response.body[:120]!r}")

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
            "conversations": conversations,
            "rate": rate,
            "duration_s": round(elapsed, 2),
            "sent": total,
            "accepted": len(accepted),
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
            "http": summary_ms(list(accepted.values())),
        }

    async def cmd_close_live(self) -> dict[str, Any]:
        for visitor in self.live:
            if visitor.ws is not None:
                visitor.ws.abort()
        closed = len(self.live)
        self.live = []
        return {"closed": closed}

    async def cmd_claim_storm(self, *, claimers: int, trials: int) -> dict[str, Any]:
        """``claimers`` agents claim the same pending handoff at once over HTTP, ``trials`` times."""
        if len(self.agents) < claimers:
            raise RuntimeError(f"{claimers} claimers need as many agents; {len(self.agents)} logged in")
        started = time.monotonic()

        async def pending_handoff(_: int) -> str:
            visitor = await self.session()
            reply = await self.pool.request(
                "POST",
                "/api/widget/handoff",
                headers={"Authorization": f"Bearer {visitor.token}"},
                json_body={"client_id": uuid.uuid4().hex},
            )
            if reply.status != 200:
                raise HttpError(f"widget handoff: HTTP {reply.status} {reply.body[:200]!r}")
            return visitor.conversation

        made = await bounded_gather(range(trials), pending_handoff, 16)
        failures = [r for r in made if isinstance(r, BaseException)]
        if failures:
            raise RuntimeError(f"{len(failures)} handoffs failed to start: {failures[0]!r}")
        conversations = [str(c) for c in made]
        setup_seconds = time.monotonic() - started
        conns = [HttpConnection(self.host, self.port) for _ in range(claimers)]
        agents = self.agents[:claimers]
        await asyncio.gather(*(c.open() for c in conns))  # connected before the first storm
        winners_per_trial: list[int] = []
        winner_latency: list[float] = []
        loser_latency: list[float] = []
        errors: list[str] = []

        async def one(conn: HttpConnection, agent: Agent, conversation: str, fired: float) -> tuple[int, float]:
            response = await self.claim(agent, conversation, conn)
            return response.status, time.monotonic() - fired

        try:
            for conversation in conversations:
                fired = time.monotonic()
                outcomes = await asyncio.gather(
                    *(one(c, a, conversation, fired) for c, a in zip(conns, agents, strict=True)),
                    return_exceptions=True,
                )
                winners = 0
                for outcome in outcomes:
                    if isinstance(outcome, BaseException):
                        errors.append(repr(outcome)[:200])
                        continue
                    status, latency = outcome
                    if status == 200:
                        winners += 1
                        winner_latency.append(latency)
                    elif status == 409:
                        loser_latency.append(latency)
                    else:
                        errors.append(f"HTTP {status}")
                winners_per_trial.append(winners)
        finally:
            for conn in conns:
                conn.close()
        return {
            **storm_summary(
                method="console API over HTTP",
                claimers=claimers,
                winners_per_trial=winners_per_trial,
                winner_seconds=winner_latency,
                loser_seconds=loser_latency,
                errors=errors,
            ),
            "setup_seconds": round(setup_seconds, 2),
        }

    # --- timeout precision ----------------------------------------------------------------------

    def _on_timeout_frame(self, ws: WebSocket, frame: dict[str, Any], received: float) -> None:
        if frame.get("type") != "state":
            return
        ws.attrs["state_frames"] = ws.attrs.get("state_frames", 0) + 1
        handoff = (frame.get("state") or {}).get("handoff") or {}
        if handoff.get("status") == "busy":
            ws.attrs["busy_states"] = ws.attrs.get("busy_states", 0) + 1
            ws.attrs.setdefault("busy_wall", time.time())

    async def cmd_timeout_start(
        self, *, handoffs: int, window: float, claim_every: int, claim_after: float
    ) -> dict[str, Any]:
        """Open ``handoffs`` visitor sockets, then request a handoff on each, spread over ``window``
        seconds; every ``claim_every``-th is claimed ``claim_after`` seconds after its request (in
        the background). Returns at once after the last request is acknowledged."""
        started = time.monotonic()
        for task in self.timeout_tasks:
            task.cancel()
        self.timeout_tasks, self.timeout_claims = [], {}

        async def prepare(_: int) -> Visitor:
            visitor = await self.session()
            await self.connect(visitor, self._on_timeout_frame)
            return visitor

        made = await bounded_gather(range(handoffs), prepare, 32)
        failures = [r for r in made if isinstance(r, BaseException)]
        if failures:
            raise RuntimeError(f"{len(failures)} visitor sockets failed to open: {failures[0]!r}")
        self.timeout_visitors = [v for v in made if isinstance(v, Visitor)]
        setup_seconds = time.monotonic() - started
        agent = self.agents[0]

        async def claim_later(visitor: Visitor, at_wall: float) -> None:
            await asyncio.sleep(max(0.0, at_wall - time.time()))
            record = self.timeout_claims[visitor.conversation]
            record["claim_sent_wall"] = time.time()
            try:
                response = await self.claim(agent, visitor.conversation)
                record["status"] = response.status
            except Exception as exc:
                record["status"] = repr(exc)[:200]
            record["claim_done_wall"] = time.time()

        requests: list[dict[str, Any]] = []
        begin = time.monotonic()
        acks: list[asyncio.Task[float]] = []
        for index, visitor in enumerate(self.timeout_visitors):
            delay = begin + index * window / max(1, handoffs) - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            acks.append(asyncio.create_task(self.request_handoff(visitor)))
        sent_walls = await asyncio.gather(*acks)
        for index, (visitor, sent) in enumerate(zip(self.timeout_visitors, sent_walls, strict=True)):
            claim = claim_every > 0 and index % claim_every == 0
            requests.append({"conversation": visitor.conversation, "requested_wall": sent, "claim": claim})
            if claim:
                self.timeout_claims[visitor.conversation] = {}
                self.timeout_tasks.append(asyncio.create_task(claim_later(visitor, sent + claim_after)))
        return {"requests": requests, "setup_seconds": round(setup_seconds, 2)}

    async def cmd_timeout_collect(self, *, settle_wall: float, give_up_wall: float) -> dict[str, Any]:
        """Wait until every unclaimed handoff's socket saw Team busy and ``settle_wall`` passed (claimed
        ones are watched until then), or until ``give_up_wall``; then report and close the sockets."""
        unclaimed = [v for v in self.timeout_visitors if v.conversation not in self.timeout_claims]
        while time.time() < give_up_wall:
            waiting = sum(1 for v in unclaimed if v.ws is not None and "busy_wall" not in v.ws.attrs)
            if waiting == 0 and time.time() >= settle_wall:
                break
            await asyncio.sleep(0.05)
        if self.timeout_tasks:
            await asyncio.wait(self.timeout_tasks, timeout=max(1.0, give_up_wall - time.time()))
        results = []
        for visitor in self.timeout_visitors:
            ws = visitor.ws
            assert ws is not None
            results.append(
                {
                    "conversation": visitor.conversation,
                    "busy_wall": ws.attrs.get("busy_wall"),
                    "busy_states": ws.attrs.get("busy_states", 0),
                    "socket_open": ws.is_open,
                    "state_frames": ws.attrs.get("state_frames", 0),
                    "claim": self.timeout_claims.get(visitor.conversation),
                }
            )
            ws.abort()
        self.timeout_visitors, self.timeout_tasks, self.timeout_claims = [], [], {}
        return {"results": results}

    # --- idle sockets ---------------------------------------------------------------------------

    async def cmd_idle_ramp(
        self, *, target: int, step: int, concurrency: int, hold: float, ping_sample: int
    ) -> dict[str, Any]:
        """Ramp idle widget sockets (each said hello with its own visitor's token) to ``target`` in
        steps, sampling daphne's RSS after each step; hold them, then check they are all still open."""
        points: list[tuple[int, int]] = []
        connect_times: list[float] = []
        failures: list[str] = []
        await asyncio.sleep(1.0)
        points.append((len(self.idle), rss_kb(self.daphne_pid)))
        started = time.monotonic()
        while len(self.idle) < target:
            batch = min(step, target - len(self.idle))
            made = await bounded_gather(range(batch), lambda _: self.session(), 16)
            visitors = [v for v in made if isinstance(v, Visitor)]
            failures.extend(repr(v)[:200] for v in made if isinstance(v, BaseException))

            async def open_one(visitor: Visitor) -> float:
                return await self.connect(visitor, None)

            timings = await bounded_gather(visitors, open_one, concurrency)
            for visitor, timing in zip(visitors, timings, strict=True):
                if isinstance(timing, BaseException):
                    failures.append(repr(timing)[:200])
                elif visitor.ws is not None:
                    connect_times.append(timing)
                    self.idle.append(visitor.ws)
            if len(failures) > max(50, target // 100):
                break  # the server is refusing: stop ramping, report what held
            await asyncio.sleep(1.0)
            points.append((len(self.idle), rss_kb(self.daphne_pid)))
        ramp_seconds = time.monotonic() - started
        await asyncio.sleep(hold)
        still_open = [ws for ws in self.idle if ws.is_open]
        # Liveness: a sample of the held sockets must still answer a ping frame through the app.
        sample = still_open[:: max(1, len(still_open) // max(1, ping_sample))][:ping_sample]
        pongs: list[float] = []

        async def ping(ws: WebSocket) -> None:
            sent = time.monotonic()
            pong = ws.expect(lambda f: f.get("type") == "pong")
            ws.send_json({"type": "ping"})
            await asyncio.wait_for(pong, 10)
            pongs.append(time.monotonic() - sent)

        ping_results = await bounded_gather(sample, ping, 50)
        return {
            "target": target,
            "opened": len(self.idle),
            "open_after_hold": len(still_open),
            "hold_s": hold,
            "failures": len(failures),
            "failure_sample": failures[:3],
            "points": points,
            "connect": summary_ms(connect_times),
            "ramp_seconds": round(ramp_seconds, 1),
            "ping_sample": len(sample),
            "ping_failures": sum(1 for r in ping_results if isinstance(r, BaseException)),
            "ping": summary_ms(pongs),
            "close_codes": sorted({ws.close_code for ws in self.idle if ws.close_code is not None}),
        }

    async def cmd_idle_close(self) -> dict[str, Any]:
        for ws in self.idle:
            ws.abort()
        closed = len(self.idle)
        self.idle = []
        await asyncio.sleep(2.0)
        return {"closed": closed, "daphne_rss_kb": rss_kb(self.daphne_pid)}


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
    for visitor in generator.live + generator.timeout_visitors:
        if visitor.ws is not None:
            visitor.ws.abort()
    for ws in generator.idle:
        ws.abort()


def main(conn: Connection, config: dict[str, Any]) -> None:
    """Entry point of the load process (``multiprocessing``, spawn start method)."""
    raise_nofile_limit()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(conn, config))
    conn.close()
