"""The load generator (``bench.loadgen``) in its own process, driven one command at a time."""

from __future__ import annotations

import contextlib
import multiprocessing
from typing import Any

from bench import loadgen


class LoadProcess:
    """The load generator in its own process (spawned: no Django, no inherited state)."""

    def __init__(self, config: dict[str, Any]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=loadgen.main, args=(child, config), name="bench-load", daemon=True)
        self.process.start()
        child.close()

    def call(self, command: str, timeout: float, **params: Any) -> Any:
        self.conn.send((command, params))
        if not self.conn.poll(timeout):
            raise TimeoutError(f"load generator: {command} took longer than {timeout:.0f} s")
        status, result = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"load generator: {command} failed:\n{result}")
        return result

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(Exception):
                self.call("stop", timeout=10)
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)
