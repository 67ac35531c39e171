"""Keep the stack's processes running: a child that exits is started again after a backoff.

Used by the run command (``pivra.stack.command_run``) and by the real-stack outage test. One child
crashing (a worker, one of the daphne processes, the private Redis) never stops the others: it is
restarted with the same command line, environment and, for Redis, the same port and data directory;
a daphne process gets the same shared listening socket, which its siblings kept serving meanwhile. Each restart is
logged as one line, e.g. ``worker exited with code 1; restarting in 2 s (restart 3)``.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol
from urllib.parse import urlsplit

from pivra.servers import Service, StackError, log, spawn, wait_for_port


class Restartable(Protocol):
    """What the supervisor needs of ``pivra.stack.AppProcesses`` (not imported: the stack imports this)."""

    services: list[Service]

    def service(self, name: str) -> Service: ...

    def start(self, name: str) -> None: ...


def respawn_in_place(service: Service, *, timeout: float = 20) -> None:
    """Start an exited server (the private Redis or PostgreSQL) again with its original command line and
    user, in place: every holder of the Service object (the code that stops it at exit) then stops the
    new process."""
    new = spawn(
        service.name,
        service.argv,
        env=service.env,
        quiet=service.quiet,
        user=service.user,
        log_file=service.log_file,
        pass_fds=service.pass_fds,
    )
    service.process = new.process
    if service.url:
        url = urlsplit(service.url)
        wait_for_port(url.hostname or "127.0.0.1", url.port or 6379, timeout=timeout, process=service.process)


@dataclass
class _Child:
    name: str
    restarts: int = 0
    delay: float = 0.0
    started_at: float = 0.0
    restart_at: float | None = None  # set while a restart waits out its backoff


@dataclass
class Supervisor:
    """Restart exited children with exponential backoff: ``min_delay`` doubling up to ``max_delay``,
    back to ``min_delay`` once a child has stayed up ``stable_after`` seconds.

    ``servers`` are started outside the app (the private Redis); they are checked first, so the
    workers find their broker again as soon as possible. ``check()`` does one pass and never
    blocks except while a restarted process starts (a daphne process: until it accepts on the shared socket)."""

    app: Restartable
    servers: list[Service] = field(default_factory=list)
    min_delay: float = 1.0
    max_delay: float = 30.0
    stable_after: float = 60.0
    clock: Callable[[], float] = time.monotonic
    say: Callable[[str], None] = log
    children: dict[str, _Child] = field(default_factory=dict)

    def __post_init__(self) -> None:
        now = self.clock()
        for name in self._names():
            self.children[name] = _Child(name=name, delay=self.min_delay, started_at=now)

    def _names(self) -> list[str]:
        return [s.name for s in self.servers] + [s.name for s in self.app.services]

    def _service(self, name: str) -> Service:
        server = next((s for s in self.servers if s.name == name), None)
        return server if server is not None else self.app.service(name)

    def check(self) -> None:
        for name in self._names():
            child = self.children.setdefault(name, _Child(name=name, delay=self.min_delay, started_at=self.clock()))
            now = self.clock()
            if child.restart_at is not None:
                if now >= child.restart_at:
                    self._restart(child)
                continue
            code = self._service(name).process.poll()
            if code is None:
                continue
            if now - child.started_at >= self.stable_after:
                child.delay = self.min_delay  # it ran fine for a while: this is a new failure
            child.restarts += 1
            child.restart_at = now + child.delay
            self.say(f"{name} exited with code {code}; restarting in {child.delay:g} s (restart {child.restarts})")
            child.delay = min(child.delay * 2, self.max_delay)

    def _restart(self, child: _Child) -> None:
        child.restart_at = None
        child.started_at = self.clock()
        try:
            if any(s.name == child.name for s in self.servers):
                respawn_in_place(self._service(child.name))
            else:
                self.app.start(child.name)  # a daphne process: waits until it accepts on the shared socket
        except (StackError, OSError) as exc:
            # Exited again while starting, hung (a web process that did not accept within its timeout
            # is killed by AppProcesses.start), or could not be spawned at all (out of file descriptors
            # or processes, and then the old process is still the exited one): either way the next
            # check() sees an exited process and backs off further; the rest of the stack keeps running.
            self.say(f"{child.name} failed to start: {exc}")
            return
        self.say(f"{child.name} restarted")

    def run(self, *, stop: threading.Event | None = None, interval: float = 0.5) -> None:
        """Check every ``interval`` seconds until ``stop`` is set (forever without one; Ctrl-C
        raises KeyboardInterrupt out of the sleep, and the caller stops every process)."""
        stop = stop or threading.Event()
        while not stop.wait(interval):
            self.check()
