"""The bench's smoke profile, so ``make bench`` cannot rot: it starts its own stack, drives every
phase over loopback and must finish with no lost, duplicated or misdelivered message, exactly one
claim winner per trial and no timeout fired after a claim; figures 1 and 3 are also measured on the
floor reference server (bench/floor/) and compared. Figures 1 and 3 send the agents' replies over
their console sockets, as the dashboard does, so every reply must be acked there. Speed targets are
reported by the bench, never asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURES = {"reply_latency", "idle_sockets", "throughput", "timeout_precision", "claim_storm", "loader_size"}
FLOOR_FIGURES = {"floor_reply_latency", "floor_throughput", "vs_floor"}  # the floor reference server, same run
SIX_PHASES = "loader,latency,throughput,claims,timeouts,idle"  # the chaos soak has its own test below


def run_bench(*args: str) -> subprocess.CompletedProcess[str]:
    # The bench brings its own PostgreSQL, Redis and app processes: none of the suite's settings leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIVRA_", "DJANGO_"))}
    return subprocess.run(
        [sys.executable, "-m", "bench", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=540
    )


@pytest.mark.timeout(600)
def test_bench_smoke_profile_measures_all_six_figures(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    run = run_bench("--profile", "smoke", "--phases", SIX_PHASES, "--out", str(out))
    assert run.returncode == 0, f"bench exited {run.returncode}\n{run.stdout[-4000:]}\n{run.stderr[-6000:]}"
    document = json.loads(out.read_text())
    assert document["profile"] == "smoke"
    assert document["problems"] == []
    figures = document["figures"]
    assert set(figures) == FIGURES | FLOOR_FIGURES
    for name, figure in figures.items():
        assert figure["value"] is not None, name
        assert isinstance(figure["pass"], bool), name

    web_processes = document["web_processes"]
    assert web_processes == len(os.sched_getaffinity(0))  # the run command's default (usable cores) is measured
    assert document["reply_via"] == "socket"  # the default: the dashboard's console socket
    for name in ("reply_latency", "floor_reply_latency"):
        assert len(figures[name]["levels"]) == 2, name
        for level in figures[name]["levels"]:
            assert level["delivered"] == level["sent"] > 0, name
            assert level["lost"] == level["duplicated"] == level["misdelivered"] == level["errors"] == 0, name
            assert level["p50_ms"] > 0 and level["p99_ms"] >= level["p50_ms"], name
    # Every Pivra reply went over an agent's console socket and was answered ``ack`` there (an
    # ``error`` answer is counted in ``errors``); the floor only takes POST /reply.
    for level in figures["reply_latency"]["levels"]:
        assert level["reply_via"] == "socket" and level["acked"] == level["sent"]
    assert figures["floor_reply_latency"]["levels"][0]["reply_via"] == "http"
    for step in figures["throughput"]["steps"]:
        assert step["reply_via"] == "socket" and step["acked"] > 0
    assert figures["throughput"]["reply_via"] == "socket" and figures["vs_floor"]["latency"]["reply_via"] == "socket"
    pivra_cpu = figures["reply_latency"]["levels"][-1]["cpu_s"]
    assert {f"daphne-{n}" for n in range(1, web_processes + 1)} <= set(pivra_cpu)
    assert figures["floor_reply_latency"]["levels"][-1]["cpu_s"]["floor"] > 0  # the floor itself answered
    assert figures["floor_throughput"]["value"] > 0 and figures["floor_throughput"]["steps"]
    assert figures["throughput"]["server_processes"] == web_processes
    versus = figures["vs_floor"]
    latency = versus["latency"]
    assert latency["p50_ratio"] == round(latency["pivra_p50_ms"] / latency["floor_p50_ms"], 2)
    assert latency["p99_ratio"] == round(latency["pivra_p99_ms"] / latency["floor_p99_ms"], 2)
    assert latency["conversations"] == figures["reply_latency"]["levels"][-1]["conversations"]
    saturation = versus["saturation"]
    assert saturation["floor_per_s"] == figures["floor_throughput"]["value"]
    assert saturation["ratio"] == round(figures["throughput"]["value"] / saturation["floor_per_s"], 2)
    for verdict in (latency["p50_pass"], latency["p99_pass"], latency["no_loss_pass"], saturation["pass"]):
        assert isinstance(verdict, bool)
    assert versus["web_processes"] == web_processes and versus["placement"]["pinned"] is False
    assert document["placement"] == versus["placement"]
    storm = figures["claim_storm"]
    for run_kind in ("http", "service"):
        assert storm[run_kind]["winners_per_trial"] == [1] * storm[run_kind]["trials"]
    timeouts = figures["timeout_precision"]
    for run_kind in ("normal", "worker_killed"):
        assert timeouts[run_kind]["fired_after_claim"] == 0
        assert timeouts[run_kind]["never_busy"] == 0
        assert timeouts[run_kind]["timed_out"] > 0
    idle = figures["idle_sockets"]
    assert idle["open_after_hold"] > 0 and idle["ping_failures"] == 0
    assert figures["loader_size"]["gzip9_bytes"] > 0
    # The table printed for humans names every figure.
    assert "6 static/widget/loader.js" in run.stdout and "5 claim storm" in run.stdout
    assert "floor, same schedule" in run.stdout and "1 Pivra / floor" in run.stdout
    assert "1 agent reply (console socket) -> widget" in run.stdout and "replies via console socket" in run.stdout
    assert "3 saturation, Pivra / floor" in run.stdout


@pytest.mark.timeout(600)
def test_bench_chaos_smoke_shows_every_stored_event_once_in_order(tmp_path: Path) -> None:
    """Redis, the workers and daphne each SIGKILLed once under traffic: every event stored reaches
    its widget client, once, in seq order, and no request got a 5xx other than 503."""
    out = tmp_path / "chaos.json"
    run = run_bench("--profile", "smoke", "--phases", "chaos", "--out", str(out))
    assert run.returncode == 0, f"bench exited {run.returncode}\n{run.stdout[-4000:]}\n{run.stderr[-6000:]}"
    document = json.loads(out.read_text())
    assert document["problems"] == []
    soak = document["figures"]["chaos"]
    assert sorted(k["target"] for k in soak["kills"]) == ["daphne", "redis", "worker"]
    assert soak["stored"] > 0 and soak["catch_up"]["count"] > 0
    assert soak["lost"] == soak["duplicated"] == soak["out_of_order"] == soak["mismatched"] == 0
    assert soak["server_errors"] == 0 and soak["clients"]["refused"] == []
    assert soak["value"] is not None
    assert "7 chaos soak" in run.stdout
