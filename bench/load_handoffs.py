"""The handoff phases' clients: the claim storm over HTTP (figure 5) and timeout precision
(figure 4): visitors request a handoff, some are claimed, the rest must see Team busy on time."""

from __future__ import annotations

import asyncio
import time
import uuid
from typing import Any

from bench.httpclient import Agent, HttpConnection, HttpError
from bench.loadbase import LoadBase, Visitor, bounded_gather
from bench.stats import storm_summary
from bench.wsclient import WebSocket


class HandoffLoad(LoadBase):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.timeout_visitors: list[Visitor] = []
        self.timeout_claims: dict[str, dict[str, Any]] = {}
        self.timeout_tasks: list[asyncio.Task[None]] = []

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
