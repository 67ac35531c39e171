"""Figure 2: idle widget sockets held across the app's web processes, and their memory each
(the slope of the processes' summed resident memory over the sockets open)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from bench.profiles import TARGET_IDLE_SOCKETS, TARGET_KB_PER_SOCKET
from bench.stats import slope

if TYPE_CHECKING:
    from bench.cli import Bench


def phase_idle(bench: Bench) -> None:
    assert bench.load is not None
    p = bench.profile
    result = bench.load.call(
        "idle_ramp",
        timeout=3600,
        target=p.idle_target,
        step=p.idle_step,
        concurrency=p.idle_concurrency,
        hold=p.idle_hold,
        ping_sample=200,
    )
    closed = bench.load.call("idle_close", timeout=300)
    points = result["points"]
    kb = slope([(float(x), float(y)) for x, y in points])
    held = result["open_after_hold"]
    if result["ping_failures"]:
        bench.problems.append(f"idle sockets: {result['ping_failures']} held sockets did not answer a ping")
    bench.log(
        f"  {held}/{p.idle_target} sockets held; {kb if kb is None else round(kb, 2)} KB each; "
        f"connect p99 {result['connect']['p99_ms']} ms"
    )
    bench.figures["idle_sockets"] = {
        "value": held,
        "kb_per_socket": None if kb is None else round(kb, 2),
        **result,
        "web_processes": bench.web_processes,
        "rss": "summed over every web process",
        "daphne_rss_kb_after_close": closed["daphne_rss_kb"],
        "target": f">= {TARGET_IDLE_SOCKETS} sockets at <= {TARGET_KB_PER_SOCKET:g} KB each",
        "pass": held >= TARGET_IDLE_SOCKETS and kb is not None and kb <= TARGET_KB_PER_SOCKET,
    }
