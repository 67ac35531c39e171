"""The README's first command, as a user runs it: ``python -m pivra.stack run`` on a fresh data dir
with no database or Redis given (SQLite file, private redis-server), then Ctrl-C."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from pivra.stack import ROOT, free_port

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


class RunCommand:
    def __init__(self, data_dir: Path, port: int) -> None:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PIVRA_", "DJANGO_"))}
        env.update({"PIVRA_DATA_DIR": str(data_dir), "PIVRA_PORT": str(port), "PIVRA_LOG_LEVEL": "WARNING"})
        self.marker = f"PIVRA_DATA_DIR={data_dir}"
        self.url = f"http://127.0.0.1:{port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "pivra.stack", "run", "--password", PASSWORD],
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
                if reply.status_code == 200 and "Agent login" in self.text:
                    return reply.json()
            except (httpx.HTTPError, ValueError) as exc:
                last = exc
            time.sleep(0.5)
        pytest.fail(f"not healthy within {timeout:.0f} s (last: {last!r}):\n{self.text[-3000:]}")


@pytest.fixture
def run_command(tmp_path: Path) -> Iterator[RunCommand]:
    run = RunCommand(tmp_path / "data", free_port())
    try:
        yield run
    finally:
        if run.process.poll() is None:
            run.process.send_signal(signal.SIGINT)
            try:
                run.process.wait(30)
            except subprocess.TimeoutExpired:
                run.process.kill()
        for pid in _processes_with(run.marker):
            os.killpg(pid, signal.SIGKILL)


def _login(client: httpx.Client, path: str, username: str) -> httpx.Response:
    page = client.get(path)
    token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
    assert token, page.text[:500]
    return client.post(
        path,
        data={"csrfmiddlewaretoken": token.group(1), "username": username, "password": PASSWORD},
        headers={"Referer": str(page.url)},
    )


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

    run_command.process.send_signal(signal.SIGINT)
    assert run_command.process.wait(60) == 0
    deadline = time.monotonic() + 15
    while _processes_with(run_command.marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _processes_with(run_command.marker) == []
    with pytest.raises(OSError):  # the private redis-server is gone too
        socket.create_connection(("127.0.0.1", int(redis_port.group(1))), timeout=2).close()
