"""Idle widget sockets (figure 2): ramp them up in steps, sampling the resident memory of every
web process of the app after each step, hold them, and check a sample still answers a ping."""

from __future__ import annotations

import asyncio
import time
from typing import Any

from bench.loadbase import LoadBase, Visitor, bounded_gather, total_rss_kb
from bench.stats import summary_ms
from bench.wsclient import WebSocket


class IdleLoad(LoadBase):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.idle: list[WebSocket] = []

    async def cmd_idle_ramp(
        self, *, target: int, step: int, concurrency: int, hold: float, ping_sample: int
    ) -> dict[str, Any]:
        """Ramp idle widget sockets (each said hello with its own visitor's token) to ``target`` in
        steps, sampling the web processes' summed RSS after each step; hold them, then check they are all still open."""
        points: list[tuple[int, int]] = []
        connect_times: list[float] = []
        failures: list[str] = []
        await asyncio.sleep(1.0)
        points.append((len(self.idle), total_rss_kb(self.daphne_pids)))
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
            points.append((len(self.idle), total_rss_kb(self.daphne_pids)))
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
        return {"closed": closed, "daphne_rss_kb": total_rss_kb(self.daphne_pids)}
