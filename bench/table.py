"""The table printed at the end of a bench run: one row per figure, its target and verdict."""

from __future__ import annotations

from typing import Any

from bench import chaos
from bench.profiles import (
    FLOOR_P50_RATIO_MAX,
    FLOOR_P99_RATIO_MAX,
    FLOOR_SATURATION_RATIO_MIN,
    TARGET_IDLE_SOCKETS,
    TARGET_KB_PER_SOCKET,
    TARGET_LATENCY_P99_MS,
    TARGET_LOADER_GZIP_BYTES,
    TARGET_LOSER_P99_MS,
    TARGET_SATURATION,
    TARGET_THROUGHPUT,
    TARGET_TIMEOUT_KILLED_P99_S,
    TARGET_TIMEOUT_P99_S,
    Profile,
)


def _le(value: float | None, limit: float) -> bool:
    return value is not None and value <= limit


def _ms(value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value:.0f} ms" if value >= 100 else f"{value:.1f} ms"


def _via(figure: dict[str, Any]) -> str:
    """How the agents sent the replies (figures 1 and 3); results from before ``reply_via`` used the API."""
    return "console socket" if figure.get("reply_via", "http") == "socket" else "console API"


def _x(ratio: float | None) -> str:
    return "-" if ratio is None else f"{ratio:.2f}x"


def _latency(level: dict[str, Any]) -> str:
    return (
        f"p50 {_ms(level['p50_ms'])}  p99 {_ms(level['p99_ms'])}  max {_ms(level['max_ms'])}  "
        f"lost {level['lost']}  dup {level['duplicated']}  (n={level['sent']})"
    )


def _saturation(figure: dict[str, Any]) -> str:
    """The best rate held, and how the next step failed (when one did)."""
    steps = figure["steps"]
    last = steps[-1] if steps else None
    failed = last is not None and last["rate"] != figure["best_offered_rate"]
    limit = f"; next {last['rate']:g}/s: p99 {_ms(last['p99_ms'])}, lost {last['lost']}" if last and failed else ""
    return f"{figure['value']:g} msg/s delivered (p99 <= 250 ms, no loss){limit}"


def table_rows(figures: dict[str, Any], profile: Profile) -> list[tuple[str, str, str, str]]:
    def verdict(figure: dict[str, Any]) -> str:
        return "PASS" if figure["pass"] else "FAIL"

    rows = [("figure", "measured", "target", "result")]
    if "reply_latency" in figures:
        figure = figures["reply_latency"]
        floor_levels = figures.get("floor_reply_latency", {}).get("levels", [])
        for index, level in enumerate(figure["levels"]):
            top = level is figure["levels"][-1]
            rows.append(
                (
                    f"1 agent reply ({_via(figure)}) -> widget, {level['conversations']} conv @ {level['rate']:g}/s "
                    "open loop, "
                    f"{figure['web_processes']} web proc",
                    _latency(level),
                    f"p99 <= {TARGET_LATENCY_P99_MS:g} ms @ 200" if top else "",
                    verdict(figure) if top else "",
                )
            )
            if index < len(floor_levels):
                floor = floor_levels[index]
                rows.append(
                    (f"  floor, same schedule ({floor['conversations']} conv, POST /reply)", _latency(floor), "", "")
                )
        ratio = figures.get("vs_floor", {}).get("latency")
        if ratio:
            rows.append(
                (
                    f"1 Pivra / floor, {ratio['conversations']} conv @ {ratio['rate']:g}/s",
                    f"p50 {_x(ratio['p50_ratio'])}  p99 {_x(ratio['p99_ratio'])}  "
                    f"lost {ratio['lost']}  dup {ratio['duplicated']}",
                    f"p50 <= {FLOOR_P50_RATIO_MAX:g}x, p99 <= {FLOOR_P99_RATIO_MAX:g}x @ 200/s, 0 lost",
                    "PASS" if ratio["p50_pass"] and ratio["p99_pass"] and ratio["no_loss_pass"] else "FAIL",
                )
            )
    if "idle_sockets" in figures:
        figure = figures["idle_sockets"]
        kb = figure["kb_per_socket"]
        rows.append(
            (
                f"2 idle widget sockets, {figure['web_processes']} web proc (RSS summed)",
                f"{figure['open_after_hold']} held {figure['hold_s']:g} s, "
                f"{'-' if kb is None else f'{kb:.1f}'} KB/socket, connect p99 {_ms(figure['connect']['p99_ms'])}, "
                f"{figure['failures']} failed",
                f">= {TARGET_IDLE_SOCKETS} @ <= {TARGET_KB_PER_SOCKET:g} KB",
                verdict(figure),
            )
        )
    if "throughput" in figures:
        figure = figures["throughput"]
        rows.append(
            (
                f"3 throughput, replies via {_via(figure)}, {figure['server_processes']} web proc, "
                f"{figure['conversations']} conv",
                _saturation(figure),
                f">= {TARGET_THROUGHPUT:g} msg/s",
                verdict(figure),
            )
        )
        if "floor_throughput" in figures:
            rows.append(
                ("  floor, same ramp (1 process, POST /reply)", _saturation(figures["floor_throughput"]), "", "")
            )
        ratio = figures.get("vs_floor", {}).get("saturation")
        if ratio:
            rows.append(
                (
                    "3 saturation, Pivra / floor",
                    f"{ratio['pivra_per_s']:g} / {ratio['floor_per_s']:g} msg/s = {_x(ratio['ratio'])}"
                    + ("  (floor passed the ramp's top: ratio is an upper bound)" if ratio["floor_topped_out"] else ""),
                    f">= {TARGET_SATURATION:g}/s and >= {FLOOR_SATURATION_RATIO_MIN:g}x floor",
                    verdict(ratio),
                )
            )
    if "timeout_precision" in figures:
        figure = figures["timeout_precision"]
        for key, label, target in (
            ("normal", "", TARGET_TIMEOUT_P99_S),
            ("worker_killed", ", worker killed + restarted", TARGET_TIMEOUT_KILLED_P99_S),
        ):
            run = figure[key]
            late = run["lateness"]
            held = _le(late["p99_ms"], target * 1000) and not run["fired_after_claim"] and not run["never_busy"]
            rows.append(
                (
                    f"4 timeout lateness, {run['handoffs']} x {figure['timeout_s']} s{label}",
                    f"p50 {_ms(late['p50_ms'])}  p99 {_ms(late['p99_ms'])}  max {_ms(late['max_ms'])}; "
                    f"{run['claimed_before_deadline']} claimed, {run['fired_after_claim']} fired after claim, "
                    f"{run['never_busy']} never busy",
                    f"p99 <= {target:g} s, 0 after claim",
                    "PASS" if held else "FAIL",
                )
            )
    if "claim_storm" in figures:
        figure = figures["claim_storm"]
        for key, first in (("http", True), ("service", False)):
            run = figure[key]
            rows.append(
                (
                    f"5 claim storm {run['claimers']} x {run['trials']}, {run['method']}",
                    f"one winner in {run['trials_with_one_winner']}/{run['trials']}; winner p50 "
                    f"{_ms(run['winner']['p50_ms'])} p99 {_ms(run['winner']['p99_ms'])}; loser p50 "
                    f"{_ms(run['loser']['p50_ms'])} p99 {_ms(run['loser']['p99_ms'])}",
                    f"1 winner always, loser p99 <= {TARGET_LOSER_P99_MS:g} ms" if first else "(for comparison)",
                    verdict(figure) if first else "",
                )
            )
    if "loader_size" in figures:
        figure = figures["loader_size"]
        rows.append(
            (
                "6 static/widget/loader.js gzip -9",
                f"{figure['gzip9_bytes']} B ({figure['raw_bytes']} B raw)",
                f"<= {TARGET_LOADER_GZIP_BYTES // 1024} KB",
                verdict(figure),
            )
        )
    return rows + chaos.table_rows(figures)
