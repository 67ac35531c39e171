"""The bench's smoke profile, so ``make bench`` cannot rot: it starts its own stack, drives every
phase over loopback and must finish with no lost, duplicated or misdelivered message, exactly one
claim winner per trial and no timeout fired after a claim. Speed targets are reported by the bench,
never asserted here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
FIGURES = {"reply_latency", "idle_sockets", "throughput", "timeout_precision", "claim_storm", "loader_size"}


@pytest.mark.timeout(600)
def test_bench_smoke_profile_measures_all_six_figures(tmp_path: Path) -> None:
    out = tmp_path / "smoke.json"
    # The bench brings its own PostgreSQL, Redis and app processes: none of the suite's settings leak in.
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIVRA_", "DJANGO_"))}
    run = subprocess.run(
        [sys.executable, "-m", "bench", "--profile", "smoke", "--out", str(out)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=540,
    )
    assert run.returncode == 0, f"bench exited {run.returncode}\n{run.stdout[-4000:]}\n{run.stderr[-6000:]}"
    document = json.loads(out.read_text())
    assert document["profile"] == "smoke"
    assert document["problems"] == []
    figures = document["figures"]
    assert set(figures) == FIGURES
    for name, figure in figures.items():
        assert figure["value"] is not None, name
        assert isinstance(figure["pass"], bool), name

    for level in figures["reply_latency"]["levels"]:
        assert level["delivered"] == level["sent"] > 0
        assert level["lost"] == level["duplicated"] == level["misdelivered"] == level["errors"] == 0
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
