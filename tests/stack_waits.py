"""Waiting on a real stack (its own daphne and workers): a give-up shows the tail of every log."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest


def wait_showing_logs(
    condition: Callable[[], bool], *, seconds: float, what: str, logs: Path, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            tails = "\n".join(f"--- {p.name}\n{p.read_text()[-3000:]}" for p in sorted(logs.glob("*.log")))
            pytest.fail(f"gave up waiting for {what}\n{tails}")
        time.sleep(interval)
