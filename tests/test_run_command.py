"""The README's first command, as a user runs it: ``python -m pivra.stack run`` on a fresh data dir
with no database or Redis given (SQLite file, private redis-server), then Ctrl-C; and started again
on the same data, where it must change nothing a person set."""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest
import redis

from pivra.stack import ROOT, StackError, _seed_command, free_port

PASSWORD = "run-command-pass-41"


def _processes_with(marker: str) -> list[int]:
    """Live processes whose environment carries ``marker`` (every child of the run inherits it)."""
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            environ = Path(f"/proc/{entry}/environ").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if marker.encode() in environ and state != "Z":
            found.append(int(entry))
    return found


def _env(data_dir: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIVRA_", "DJANGO_"))}
    return {**env, "PIVRA_DATA_DIR": str(data_dir), "PIVRA_LOG_LEVEL": "WARNING", **extra}


class RunCommand:
    def __init__(self, data_dir: Path, port: int, *args: str) -> None:
        env = _env(data_dir, PIVRA_PORT=str(port))
        self.data_dir = data_dir
        self.marker = f"PIVRA_DATA_DIR={data_dir}"
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pivra.stack", "run", *args],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        self.output: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stdout is not None
        for line in self.process.stdout:
            self.output.append(line)

    @property
    def text(self) -> str:
        return "".join(self.output)

    def wait_healthy(self, timeout: float) -> dict[str, object]:
        deadline = time.monotonic() + timeout
        last: object = None
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                pytest.fail(f"the run command exited with {self.process.returncode}:\n{self.text[-3000:]}")
            try:
                reply = httpx.get(f"{self.url}/healthz", timeout=5)
                last = reply.json()
                if reply.status_code == 200 and "pivra: serving on" in self.text:
                    return reply.json()
            except (httpx.HTTPError, ValueError) as exc:
                last = exc
            time.sleep(0.5)
        pytest.fail(f"not healthy within {timeout:.0f} s (last: {last!r}):\n{self.text[-3000:]}")

    def redis_url(self) -> str:
        found = re.search(r"private Redis at (redis://\S+)", self.text)
        assert found, self.text
        return found.group(1)

    def stop(self) -> None:
        """Ctrl-C, as a person stops it; every child must be gone afterwards."""
        self.process.send_signal(signal.SIGINT)
        assert self.process.wait(60) == 0
        deadline = time.monotonic() + 15
        while _processes_with(self.marker) and time.monotonic() < deadline:
            time.sleep(0.2)
        assert _processes_with(self.marker) == []


def _child_running(run: RunCommand, fragment: str) -> int:
    """The pid of the run command's child whose command line contains ``fragment``."""
    for pid in _processes_with(run.marker):
        with contextlib.suppress(OSError):
            if fragment.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                return pid
    raise AssertionError(f"no child running {fragment!r}")


def _wait_for_text(run: RunCommand, text: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while text not in run.text:
        if time.monotonic() > deadline or run.process.poll() is not None:
            pytest.fail(f"{text!r} not in the run command's log:\n{run.text[-3000:]}")
        time.sleep(0.2)


def _cleanup(run: RunCommand) -> None:
    if run.process.poll() is None:
        run.process.send_signal(signal.SIGINT)
        try:
            run.process.wait(30)
        except subprocess.TimeoutExpired:
            run.process.kill()
    for pid in _processes_with(run.marker):
        with contextlib.suppress(ProcessLookupError):  # gone meanwhile
            os.killpg(pid, signal.SIGKILL)


@pytest.fixture
def run_command(tmp_path: Path) -> Iterator[RunCommand]:
    run = RunCommand(tmp_path / "data", free_port(), "--password", PASSWORD)
    try:
        yield run
    finally:
        _cleanup(run)


@pytest.fixture
def start_run(tmp_path: Path) -> Iterator[Callable[..., RunCommand]]:
    """Start the run command (again) on one data dir; every run is stopped at the end."""
    runs: list[RunCommand] = []

    def start(*args: str) -> RunCommand:
        runs.append(RunCommand(tmp_path / "data", free_port(), *args))
        return runs[-1]

    try:
        yield start
    finally:
        for run in runs:
            _cleanup(run)


def _login(client: httpx.Client, path: str, username: str, password: str = PASSWORD) -> httpx.Response:
    page = client.get(path)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    return client.post(
        path,
        data={"csrfmiddlewaretoken": token.group(1), "username": username, "password": password},
        headers={"Referer": str(page.url)},
    )


def _admin_accepts(run: RunCommand, username: str, password: str) -> bool:
    with httpx.Client(base_url=run.url, follow_redirects=True, timeout=15) as admin:
        return _login(admin, "/admin/login/?next=/admin/", username, password).url.path == "/admin/"


PRINTED_LOGIN = re.compile(r"(?:Staff|Agent) login\s+(\S+) / (\S+)")


def test_the_run_command_serves_everything_prints_logins_and_stops_every_process_on_ctrl_c(
    run_command: RunCommand,
) -> None:
    health = run_command.wait_healthy(timeout=180)
    assert health["status"] == "ok"
    checks = health["checks"]
    assert isinstance(checks, dict)
    assert {name: check["status"] for name, check in checks.items()} == {
        "database": "ok",
        "redis": "ok",
        "worker": "ok",
    }
    assert checks["database"]["vendor"] == "sqlite"  # the quick-look default: a file in the data dir

    staff = re.search(r"Staff login\s+(\S+) / (\S+)", run_command.text)
    agents = re.findall(r"Agent login\s+(\S+) / (\S+)", run_command.text)
    assert staff and staff.group(2) == PASSWORD, run_command.text
    assert len(agents) == 2 and all(password == PASSWORD for _, password in agents)

    with httpx.Client(base_url=run_command.url, follow_redirects=True, timeout=15) as client:
        demo = client.get("/demo/")
        assert demo.status_code == 200
        assert "data-pivra-key" in demo.text
        assert client.get("/dashboard/").url.path.startswith("/accounts/login")
        assert _login(client, "/accounts/login/", agents[0][0]).url.path.startswith("/dashboard")
        assert "Conversations" in client.get("/dashboard/").text
    with httpx.Client(base_url=run_command.url, follow_redirects=True, timeout=15) as admin:
        index = _login(admin, "/admin/login/?next=/admin/", staff.group(1))
        assert index.url.path == "/admin/" and "Pivra staff admin" in index.text

    children = [pid for pid in _processes_with(run_command.marker) if pid != run_command.process.pid]
    assert len(children) >= 4, children  # daphne, worker, delivery worker, beat (and their own children)
    redis_port = re.search(r"private Redis at redis://127\.0\.0\.1:(\d+)/", run_command.text)
    assert redis_port, run_command.text
    with socket.create_connection(("127.0.0.1", int(redis_port.group(1))), timeout=2):
        pass

    # A crashed child (the worker, the private Redis) is restarted, with one line in the log; the
    # others keep running. Redis comes back on its port with its AOF in the data dir.
    # (redis-server rewrites its process title over its environment: found by asking it.)
    redis_pid = int(redis.Redis.from_url(run_command.redis_url()).info("server")["process_id"])
    for name, pid in (("worker", _child_running(run_command, "pivra-worker-")), ("redis", redis_pid)):
        os.kill(pid, signal.SIGKILL)
        _wait_for_text(run_command, f"{name} exited with code -9; restarting in 1 s (restart 1)")
        _wait_for_text(run_command, f"{name} restarted")
    assert any((run_command.data_dir / "redis").iterdir()), "the private Redis keeps its AOF in the data dir"
    assert run_command.wait_healthy(timeout=60)["status"] == "ok"
    assert "daphne exited" not in run_command.text and "beat exited" not in run_command.text

    run_command.process.send_signal(signal.SIGINT)
    assert run_command.process.wait(60) == 0
    deadline = time.monotonic() + 15
    while _processes_with(run_command.marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(run_command.marker) == []
    with pytest.raises(OSError):  # the private redis-server is gone too
        socket.create_connection(("127.0.0.1", int(redis_port.group(1))), timeout=2).close()


def test_a_restarted_run_command_keeps_a_changed_password_and_prints_no_password(
    start_run: Callable[..., RunCommand],
) -> None:
    first = start_run()  # no --password: each demo login gets a random one, printed this once
    first.wait_healthy(timeout=180)
    logins = dict(PRINTED_LOGIN.findall(first.text))
    assert set(logins) == {"admin", "alice", "bob"}, first.text
    assert len(set(logins.values())) == 3 and "pivra-demo" not in logins.values()
    assert _admin_accepts(first, "admin", logins["admin"])

    # The operator changes admin's password, as they would in the admin or with manage.py.
    changed = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SET_PASSWORD],
        cwd=ROOT,
        env=_env(first.data_dir, PIVRA_REDIS_URL=first.redis_url()),
        capture_output=True,
        text=True,
    )
    assert changed.returncode == 0, changed.stderr
    first.stop()

    second = start_run()
    second.wait_healthy(timeout=180)
    assert PRINTED_LOGIN.findall(second.text) == [], second.text
    assert not any(password in second.text for password in logins.values())
    assert "Existing data kept" in second.text
    assert not _admin_accepts(second, "admin", logins["admin"])  # the old password stays refused
    assert _admin_accepts(second, "admin", CHANGED)
    with httpx.Client(base_url=second.url, follow_redirects=True, timeout=15) as client:
        assert _login(client, "/accounts/login/", "alice", logins["alice"]).url.path.startswith("/dashboard")
    # Guessing is throttled on the served stack too (daphne, counters in its Redis): after ten wrong
    # passwords from this address within a minute (the successful logins above cleared its earlier
    # failure: AXES_RESET_ON_SUCCESS), the eleventh attempt is refused even with the right password.
    with httpx.Client(base_url=second.url, follow_redirects=True, timeout=15) as guesser:
        wrong = [_login(guesser, "/accounts/login/", "bob", f"wrong-{n}").status_code for n in range(10)]
        assert wrong == [200] * 9 + [429]
        eleventh = _login(guesser, "/accounts/login/", "bob", logins["bob"])
        assert eleventh.status_code == 429 and "Too many attempts. Try again in 15 minutes." in eleventh.text
    second.stop()


CHANGED = "a-changed-admin-pass-77"
SET_PASSWORD = (
    "from django.contrib.auth.models import User; u = User.objects.get(username='admin'); "
    f"u.set_password('{CHANGED}'); u.save()"
)


def test_a_fixed_demo_password_is_refused_for_an_https_site(tmp_path: Path) -> None:
    for extra, args in (({"PIVRA_DEMO_PASSWORD": "pivra-demo"}, []), ({}, ["--password", "some-pass-1"])):
        env = _env(tmp_path / "data", PIVRA_PUBLIC_URL="https://chat.example.com", **extra)
        ran = subprocess.run(
            [sys.executable, "-m", "pivra.stack", "run", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert ran.returncode == 1
        assert ran.stdout == ""
        lines = ran.stderr.strip().splitlines()
        assert len(lines) == 1 and "refused when PIVRA_PUBLIC_URL is https" in lines[0], ran.stderr
    assert not (tmp_path / "data" / "pivra.sqlite3").exists()  # refused before anything was set up


@pytest.mark.parametrize(
    ("flag", "variable", "if_empty"),
    [(False, "", True), (True, "", False), (False, "1", False), (False, "no", True)],
)
def test_demo_data_is_seeded_on_an_empty_database_only_unless_asked(flag: bool, variable: str, if_empty: bool) -> None:
    argv, env = _seed_command(argparse.Namespace(password="a-pass-123", demo=flag), {"PIVRA_DEMO": variable})
    assert argv[1:] == ["manage.py", "seed_demo", *(["--if-empty"] if if_empty else [])]
    assert env["PIVRA_DEMO_PASSWORD"] == "a-pass-123"  # in the environment, never in the visible argv


def test_a_bad_pivra_demo_value_is_a_one_line_configuration_error() -> None:
    with pytest.raises(StackError, match="PIVRA_DEMO='maybe' is not a boolean"):
        _seed_command(argparse.Namespace(password=None, demo=False), {"PIVRA_DEMO": "maybe"})
