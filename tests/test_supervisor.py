"""The run command's supervisor: an exited child is restarted with backoff, the others keep running;
the private Redis persists (AOF) and is restarted on its port with its data."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import redis

from pivra.servers import Service, StackError, start_redis
from pivra.stack import redis_data_dir
from pivra.supervisor import Supervisor


def _child(name: str, seconds: float = 600) -> Service:
    process = subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"], start_new_session=True)
    return Service(name=name, process=process)


@dataclass
class FakeApp:
    """AppProcesses' restart contract: start(name) replaces the service with a fresh process."""

    services: list[Service]
    started: list[str] = field(default_factory=list)

    def service(self, name: str) -> Service:
        return next(s for s in self.services if s.name == name)

    def start(self, name: str) -> None:
        self.started.append(name)
        old = self.service(name)
        self.services[self.services.index(old)] = _child(name)

    def crash(self, name: str) -> None:
        os.killpg(self.service(name).process.pid, signal.SIGKILL)
        self.service(name).process.wait(10)

    def stop(self) -> None:
        for service in self.services:
            service.stop()


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def app() -> Iterator[FakeApp]:
    fake = FakeApp(services=[_child("daphne"), _child("worker"), _child("beat")])
    yield fake
    fake.stop()


def test_an_exited_child_is_restarted_with_a_doubling_backoff_and_the_others_keep_running(app: FakeApp) -> None:
    clock, lines = Clock(), list[str]()
    supervisor = Supervisor(app=app, clock=clock, say=lines.append, min_delay=1, max_delay=4, stable_after=60)
    others = {name: app.service(name).process.pid for name in ("daphne", "beat")}
    delays = []
    for restart in range(1, 5):
        app.crash("worker")
        supervisor.check()
        assert lines[-1].startswith("worker exited with code -9; restarting in ")
        assert lines[-1].endswith(f" s (restart {restart})")
        delay = float(lines[-1].split("restarting in ")[1].split(" s")[0])
        delays.append(delay)
        clock.now += delay - 0.1
        supervisor.check()
        assert app.started.count("worker") == restart - 1  # still waiting out its backoff
        clock.now += 0.1
        supervisor.check()
        assert app.started.count("worker") == restart
        assert lines[-1] == "worker restarted"
    assert delays == [1, 2, 4, 4]
    assert {name: app.service(name).process.pid for name in ("daphne", "beat")} == others
    assert all(app.service(name).process.poll() is None for name in ("daphne", "worker", "beat"))


def test_the_backoff_starts_over_after_the_child_stayed_up(app: FakeApp) -> None:
    clock, lines = Clock(), list[str]()
    supervisor = Supervisor(app=app, clock=clock, say=lines.append, min_delay=1, max_delay=30, stable_after=60)
    for _ in range(3):
        app.crash("beat")
        supervisor.check()
        clock.now += 10
        supervisor.check()
    assert lines[-2].startswith("beat exited with code -9; restarting in 4 s (restart 3)")
    clock.now += 61  # up for more than stable_after
    app.crash("beat")
    supervisor.check()
    assert lines[-1] == "beat exited with code -9; restarting in 1 s (restart 4)"


def test_the_private_redis_is_restarted_on_its_port_with_its_aof_data(tmp_path: Path) -> None:
    server = start_redis(data_dir=tmp_path / "redis")
    app = FakeApp(services=[])
    lines: list[str] = []
    try:
        client = redis.Redis.from_url(server.url)
        client.lpush("celery", "queued task")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        time.sleep(1.5)  # appendfsync everysec
        os.killpg(server.process.pid, signal.SIGKILL)  # a crash: nothing is written on the way out
        server.process.wait(10)
        clock = Clock()
        supervisor = Supervisor(app=app, servers=[server], clock=clock, say=lines.append, min_delay=1)
        supervisor.check()
        clock.now += 1
        supervisor.check()
        assert lines == ["redis exited with code -9; restarting in 1 s (restart 1)", "redis restarted"]
        assert server.process.poll() is None
        assert redis.Redis.from_url(server.url).lrange("celery", 0, -1) == [b"queued task"]
    finally:
        server.stop()
    assert (tmp_path / "redis").is_dir(), "the data directory outlives the server"


def test_tests_redis_keeps_nothing_and_the_run_commands_lives_in_the_data_dir(tmp_path: Path) -> None:
    server = start_redis()
    try:
        assert redis.Redis.from_url(server.url).config_get("appendonly") == {"appendonly": "no"}
    finally:
        server.stop()
    assert redis_data_dir(env={"PIVRA_DATA_DIR": str(tmp_path)}) == tmp_path.resolve() / "redis"
    assert redis_data_dir(env={"PIVRA_DATA_DIR": ""}).parts[-2:] == ("var", "redis")


def test_a_child_that_fails_while_starting_is_tried_again_later(app: FakeApp) -> None:
    clock, lines = Clock(), list[str]()
    supervisor = Supervisor(app=app, clock=clock, say=lines.append, min_delay=1, max_delay=30)
    real_start = app.start

    def start_that_dies(name: str) -> None:
        real_start(name)
        app.crash(name)  # as daphne exiting before it answers on its port
        raise StackError(f"process {name} exited with code -9 while starting")

    app.start = start_that_dies  # type: ignore[method-assign]
    app.crash("daphne")
    supervisor.check()
    clock.now += 1
    supervisor.check()
    assert lines[-1] == "daphne failed to start: process daphne exited with code -9 while starting"
    app.start = real_start  # type: ignore[method-assign]
    supervisor.check()
    assert lines[-1] == "daphne exited with code -9; restarting in 2 s (restart 2)"
    clock.now += 2
    supervisor.check()
    assert lines[-1] == "daphne restarted"
    assert app.service("daphne").process.poll() is None


def test_a_child_that_cannot_even_be_spawned_is_tried_again_and_the_stack_keeps_running(app: FakeApp) -> None:
    clock, lines = Clock(), list[str]()
    supervisor = Supervisor(app=app, clock=clock, say=lines.append, min_delay=1, max_delay=30)
    real_start = app.start

    def out_of_processes(name: str) -> None:
        raise BlockingIOError(11, "Resource temporarily unavailable")  # fork() failing: EAGAIN

    app.start = out_of_processes  # type: ignore[method-assign]
    app.crash("worker")
    supervisor.check()
    clock.now += 1
    supervisor.check()  # raised out of run() before, and the run command stopped every process
    assert lines[-1] == "worker failed to start: [Errno 11] Resource temporarily unavailable"
    app.start = real_start  # type: ignore[method-assign]
    supervisor.check()
    assert lines[-1] == "worker exited with code -9; restarting in 2 s (restart 2)"
    clock.now += 2
    supervisor.check()
    assert lines[-1] == "worker restarted" and app.service("worker").process.poll() is None
