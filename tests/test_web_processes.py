"""Every core serves: PIVRA_WEB_PROCESSES daphne processes share one pre-bound socket (``--fd``).

The unit tests check the launcher's side (the count, the socket, daphne's argv); the real-stack
tests run two daphne processes on the test database and the session's Redis, place each client
on a known process (tests/web_process_clients.py) and prove that an agent's reply served by one
process reaches a widget held by the other, and that a process killed mid-traffic loses no event.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.conf import settings as django_settings
from django.db import connection, connections

from conversations.models import Event
from pivra import stack
from pivra.stack import PYTHON, AppProcesses, StackError, free_port, spawn, start_app
from pivra.supervisor import Supervisor
from pivra.web_processes import is_accepting, listen, socket_inode, web_process_count
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff
from tests.proc_sockets import connection_holder, wait_for_holder
from tests.stack_waits import wait_showing_logs
from tests.web_process_clients import Agent, WidgetClient, new_widget_visitor, placed_socket, until

PASSWORD = "pass-12345"  # tests/factories.make_user's

# --- the launcher ----------------------------------------------------------------------------


CORES = len(os.sched_getaffinity(0))  # the cores this process may use (a container's), not the machine's


@pytest.mark.parametrize(("value", "count"), [(None, CORES), ("", CORES), ("3", 3)])
def test_the_web_process_count_defaults_to_the_usable_cores(value: str | None, count: int) -> None:
    env = {} if value is None else {"PIVRA_WEB_PROCESSES": value}
    assert web_process_count(env=env) == count


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("two", "PIVRA_WEB_PROCESSES='two' is not a whole number"),
        ("0", "PIVRA_WEB_PROCESSES=0 is below the minimum of 1"),
        ("-2", "PIVRA_WEB_PROCESSES=-2 is below the minimum of 1"),
    ],
)
def test_a_bad_web_process_count_stops_the_launcher_with_a_clear_error(value: str, message: str) -> None:
    with pytest.raises(StackError, match=f"configuration error: {message}"):
        web_process_count(env={"PIVRA_WEB_PROCESSES": value})
    # start_app refuses before binding or starting anything.
    with pytest.raises(StackError, match=f"configuration error: {message}"):
        start_app(env={"PIVRA_WEB_PROCESSES": value}, port=free_port(), roles=("web",))


def test_the_run_command_refuses_a_bad_count_before_starting_anything(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    def private_services(**kwargs: object) -> None:
        raise AssertionError("started servers despite the bad value")

    monkeypatch.setattr(stack, "private_services", private_services)
    monkeypatch.setattr(stack, "_forward_signals_as_keyboard_interrupt", lambda: None)
    monkeypatch.setenv("PIVRA_WEB_PROCESSES", "many")
    assert stack.main(["run"]) == 1
    assert "error: configuration error: PIVRA_WEB_PROCESSES='many' is not a whole number" in capsys.readouterr().err


def test_each_daphne_process_is_handed_the_one_listening_socket() -> None:
    with listen("127.0.0.1", 0) as sock:
        argv = stack.daphne_argv(env={}, listener=sock)
        assert argv[argv.index("--fd") + 1] == str(sock.fileno())
        assert "-b" not in argv and "-p" not in argv
        assert "--proxy-headers" not in argv
        assert argv[-1] == "pivra.asgi:application"
        # Bound, listening, shared queue deep enough for a burst, non-blocking (Twisted adopts it as is:
        # a process woken for a connection a sibling took must not block).
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR)
        assert sock.getsockopt(socket.SOL_SOCKET, socket.SO_ACCEPTCONN)
        assert sock.getblocking() is False


def test_a_port_in_use_is_a_clear_error_naming_the_port() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(StackError, match=f"cannot listen on 127.0.0.1:{port}: .*port {port} is taken: `ss -ltnp"):
            listen("127.0.0.1", port)


SLOW_TO_STOP = """
import pathlib, signal, sys, time
where = pathlib.Path(sys.argv[1])
def stop(*args):
    (where / "term").write_text(str(time.time()))
    time.sleep(1)
    (where / "exit").write_text(str(time.time()))
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
(where / "ready").touch()
time.sleep(60)
"""


def test_stop_signals_every_process_before_waiting_for_any(tmp_path: Path) -> None:
    """N processes slow to stop are stopped in one wait, not N: every one is told before any exits."""
    dirs = [tmp_path / str(n) for n in range(3)]
    services = []
    for directory in dirs:
        directory.mkdir()
        services.append(spawn(directory.name, [PYTHON, "-c", SLOW_TO_STOP, str(directory)]))
    for directory in dirs:
        until_exists(directory / "ready")
    AppProcesses(services=services, http_url="").stop()
    assert all(s.process.returncode == 0 for s in services)
    told = [float((d / "term").read_text()) for d in dirs]
    exited = [float((d / "exit").read_text()) for d in dirs]
    assert max(told) < min(exited), (told, exited)


def until_exists(path: Path) -> None:
    deadline = time.monotonic() + 20
    while not path.exists():
        assert time.monotonic() < deadline, f"{path} never appeared"
        time.sleep(0.05)


def test_a_restarted_web_process_that_hangs_is_killed_so_it_is_restarted_again(monkeypatch: pytest.MonkeyPatch) -> None:
    with listen("127.0.0.1", 0) as sock:
        hung = [PYTHON, "-c", "import time; time.sleep(60)"]  # never accepts on the socket
        old = spawn("daphne-1", hung, pass_fds=(sock.fileno(),))
        old.process.kill()
        old.process.wait()
        app = AppProcesses(services=[old], http_url="", listener=sock)
        real_wait = stack.wait_until_accepting_or_kill

        def wait_briefly(process: subprocess.Popen[bytes], listener: socket.socket, *, timeout: float) -> None:
            real_wait(process, listener, timeout=1)

        monkeypatch.setattr(stack, "wait_until_accepting_or_kill", wait_briefly)
        lines: list[str] = []
        supervisor = Supervisor(app=app, say=lines.append, min_delay=0)
        supervisor.check()  # sees it exited
        supervisor.check()  # restarts it: it hangs and is killed
        assert lines[-1].startswith("daphne-1 failed to start: ") and "did not accept" in lines[-1]
        assert app.service("daphne-1").process.poll() is not None
        supervisor.check()
        assert lines[-1].startswith("daphne-1 exited with code -9; restarting"), lines


def test_the_processes_exit_when_the_launcher_is_killed(tmp_path: Path) -> None:
    """kill -9 of the launcher leaves no orphan holding the port: each child gets SIGTERM."""
    launcher = (
        "import sys, time; from pivra.servers import spawn; "
        "kids = [spawn(f'kid-{n}', [sys.executable, '-c', 'import time; time.sleep(120)']) for n in range(2)]; "
        "print(' '.join(str(k.process.pid) for k in kids), flush=True); time.sleep(120)"
    )
    process = subprocess.Popen([PYTHON, "-c", launcher], cwd=stack.ROOT, stdout=subprocess.PIPE, text=True)
    try:
        assert process.stdout is not None
        kids = [int(pid) for pid in process.stdout.readline().split()]
        assert len(kids) == 2 and all(_alive(pid) for pid in kids)
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        deadline = time.monotonic() + 10
        while any(_alive(pid) for pid in kids) and time.monotonic() < deadline:
            time.sleep(0.05)
        assert not any(_alive(pid) for pid in kids), "a child outlived its launcher"
    finally:
        process.kill()
        process.wait()


def _alive(pid: int) -> bool:
    """Running (a zombie reparented to init counts as gone)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_an_ipv6_address_is_served_by_several_processes(tmp_path: Path) -> None:
    """daphne really serves an IPv6 shared socket (handed over as systemd would: Twisted's fd
    endpoint cannot name the family)."""
    if connection.vendor != "postgresql":
        pytest.skip("the real stack runs on PostgreSQL")
    try:
        listen("::1", 0).close()
    except StackError:
        pytest.skip("no IPv6 loopback here")
    port = free_port()
    env = {**_stack_env(f"http://[::1]:{port}"), "PIVRA_ALLOWED_HOSTS": "[::1]"}
    app = start_app(env=env, host="::1", port=port, log_dir=tmp_path, web_processes=2, roles=("web",))
    try:
        assert [s.name for s in app.web_services()] == ["daphne-1", "daphne-2"]  # both accept (start_app waited)
        response = httpx.get(f"http://[::1]:{port}/accounts/login/", timeout=20)
        assert response.status_code == 200, response.text[:300]
    finally:
        app.stop()


def test_start_app_refuses_an_unknown_role() -> None:
    with pytest.raises(StackError, match="unknown roles"):
        start_app(env={}, port=free_port(), roles=("web", "cron"))


# --- two real processes ----------------------------------------------------------------------


@pytest.fixture(scope="module")
def two_processes(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AppProcesses, Path]]:
    if connection.vendor != "postgresql":
        pytest.skip("the real stack runs on PostgreSQL")
    port = free_port()
    env = _stack_env(f"http://127.0.0.1:{port}")
    logs = tmp_path_factory.mktemp("web-process-logs")
    # Only the web role: the handoffs here are claimed at once, no worker or beat is needed (so
    # /healthz, which wants a worker on every queue, answers 503: the login page shows it serves).
    app = start_app(env=env, port=port, log_dir=logs, web_processes=2, roles=("web",))
    try:
        wait_showing_logs(
            lambda: httpx.get(f"{app.http_url}/accounts/login/", timeout=10).status_code == 200,
            seconds=60,
            what="the login page",
            logs=logs,
        )
        yield app, logs
    finally:
        app.stop()


def _stack_env(public_url: str) -> dict[str, str]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "PIVRA_DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "PIVRA_REDIS_URL": django_settings.REDIS_URL,
        "PIVRA_PUBLIC_URL": public_url,
        "PIVRA_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PIVRA_RATE_VISITOR_PER_MINUTE": "1000",
        "PIVRA_DB_POOL_MAX": "8",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def _pids(app: AppProcesses) -> list[int]:
    return [service.process.pid for service in app.web_services()]


def _claimed(app: AppProcesses, personas: Personas, count: int) -> tuple[Agent, list[tuple[str, str]]]:
    """``count`` widget visitors waiting for a human, each claimed by the workspace's owner."""
    bot = enable_handoff(personas.chatbot, keywords=[])
    agent = Agent(app.http_url, personas.owner.username, PASSWORD)
    visitors = [new_widget_visitor(app.http_url, bot.public_key) for _ in range(count)]
    for _, conversation in visitors:
        status, body = agent.post(f"/handoffs/{conversation}/claim")
        assert status == 200, body
    return agent, visitors


def _stored(conversation: str) -> dict[int, str]:
    """The conversation's events, read from a worker thread of the test's event loop (its
    connection is closed after: an open one would keep the test database from being dropped)."""
    try:
        return dict(Event.objects.filter(conversation__public_id=conversation).values_list("seq", "text"))
    finally:
        connections.close_all()


def test_the_two_processes_share_the_address_and_both_accept(two_processes: tuple[AppProcesses, Path]) -> None:
    app, _ = two_processes
    assert [s.name for s in app.services] == ["daphne-1", "daphne-2"]
    assert app.service("daphne") is app.service("daphne-1")
    assert app.listener is not None
    assert all(is_accepting(pid, socket_inode(app.listener)) for pid in _pids(app))
    port = app.listener.getsockname()[1]
    # Which process wakes first is the scheduler's choice: connect (holding each connection, so a
    # process busy with one leaves the next to its sibling) until both have accepted one.
    held: list[socket.socket] = []
    holders: set[int | None] = set()
    try:
        while holders != set(_pids(app)) and len(held) < 400:
            sock = socket.create_connection(("127.0.0.1", port))
            held.append(sock)
            holders.add(wait_for_holder(_pids(app), server_port=port, client_port=sock.getsockname()[1]))
        assert holders == set(_pids(app)), f"only {holders} accepted, in {len(held)} connections"
    finally:
        for sock in held:
            sock.close()


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(120)
def test_a_widget_on_one_process_receives_the_reply_another_process_served(
    personas: Personas, two_processes: tuple[AppProcesses, Path]
) -> None:
    app, logs = two_processes
    first, second = _pids(app)
    agent, [(token, conversation)] = _claimed(app, personas, 1)
    port = int(app.http_url.rsplit(":", 1)[1])

    async def scenario() -> dict[str, Any]:
        widget = WidgetClient(base=app.http_url, token=token, conversation=conversation, pids=[first, second])
        await widget.start(want=first)
        try:
            await asyncio.wait_for(widget.welcomed.wait(), 15)
            agent_sock = await asyncio.to_thread(placed_socket, port, pids=[first, second], want=second)
            agent.use(agent_sock)
            status, reply = await asyncio.to_thread(
                agent.post, f"/handoffs/{conversation}/reply", {"client_id": "r1", "text": "From process two"}
            )
            assert status == 201, reply
            # The reply was served by the second process (its connection is still the placed one).
            served_by = connection_holder([first, second], server_port=port, client_port=agent_sock.getsockname()[1])
            assert served_by == second
            seq = int(reply["seq"])
            with contextlib.suppress(AssertionError):  # asserted below, with the frames seen
                await until(lambda: seq in widget.shown, seconds=15, what="the reply on the widget")
            return {"seq": seq, "widget": widget}
        finally:
            await widget.stop()

    result = asyncio.run(scenario())
    widget: WidgetClient = result["widget"]
    assert widget.holders == [first], "the widget's socket was not held by the first process throughout"
    assert result["seq"] in widget.frames, f"the reply never reached the socket on the other process ({logs})"
    assert widget.shown[result["seq"]]["text"] == "From process two"
    assert widget.gap_fetches == 0  # it came as a frame, not through a fetch


VISITORS = 6
REPLIES_BEFORE_KILL = 15
REPLIES_AFTER_RESTART = 10


class ReplyStream(threading.Thread):
    """The agent replying round-robin to every conversation, retrying a failed call with the same
    client_id (an identical resend is stored once) as the console does."""

    def __init__(self, agent: Agent, conversations: list[str]) -> None:
        super().__init__(daemon=True)
        self.agent, self.conversations = agent, conversations
        self.running = threading.Event()
        self.running.set()
        self.stored: list[tuple[float, int]] = []  # (when, status) of every answered call
        self.errors = 0

    def run(self) -> None:
        number = 0
        while self.running.is_set():
            number += 1
            conversation = self.conversations[number % len(self.conversations)]
            body = {"client_id": f"r{number}", "text": f"reply {number}"}
            for _ in range(50):
                try:
                    status, _ = self.agent.post(f"/handoffs/{conversation}/reply", body)
                except OSError:
                    self.errors += 1
                    time.sleep(0.05)
                    continue
                self.stored.append((time.monotonic(), status))
                break
            time.sleep(0.05)


@pytest.mark.django_db(transaction=True)
@pytest.mark.timeout(240)
def test_a_process_killed_mid_traffic_loses_no_event_and_is_restarted(
    personas: Personas, two_processes: tuple[AppProcesses, Path]
) -> None:
    app, logs = two_processes
    first, second = _pids(app)
    agent, visitors = _claimed(app, personas, VISITORS)
    port = int(app.http_url.rsplit(":", 1)[1])
    lines: list[str] = []
    supervisor = Supervisor(app=app, say=lines.append, min_delay=1.0)
    stop_supervising = threading.Event()
    supervising = threading.Thread(target=supervisor.run, kwargs={"stop": stop_supervising, "interval": 0.2})

    async def scenario() -> dict[str, Any]:
        widgets = [
            WidgetClient(base=app.http_url, token=token, conversation=conversation, pids=[first, second])
            for token, conversation in visitors
        ]
        for number, widget in enumerate(widgets):  # half on each process
            await widget.start(want=(first, second)[number % 2])
        # The agent's own connection is on the survivor, so its stream never pauses.
        agent.use(await asyncio.to_thread(placed_socket, port, pids=[first, second], want=second))
        replies = ReplyStream(agent, [conversation for _, conversation in visitors])
        replies.start()
        try:
            await until(lambda: len(replies.stored) >= REPLIES_BEFORE_KILL, seconds=60, what="the first replies")
            killed_at = time.monotonic()
            await asyncio.to_thread(app.kill, "daphne-1")
            supervising.start()
            await until(lambda: "daphne-1 restarted" in lines, seconds=60, what="daphne-1 restarted")
            restarted_at = time.monotonic()
            during_outage = [status for when, status in replies.stored if killed_at < when < restarted_at]
            count = len(replies.stored)
            await until(
                lambda: len(replies.stored) >= count + REPLIES_AFTER_RESTART, seconds=60, what="replies after it"
            )
        finally:
            replies.running.clear()
            await asyncio.to_thread(replies.join, 30)
        # Every stored event reaches every widget (live, by the hello's replay or by a gap fetch).
        expected = {w.conversation: await asyncio.to_thread(_stored, w.conversation) for w in widgets}
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and any(set(w.shown) != set(expected[w.conversation]) for w in widgets):
            for widget in widgets:
                if (
                    widget.ws is not None
                    and widget.ws.is_open
                    and set(widget.shown) != set(expected[widget.conversation])
                ):
                    widget._schedule_fetch(0.3)
            await asyncio.sleep(0.2)
        for widget in widgets:
            await widget.stop()
        return {"widgets": widgets, "expected": expected, "during_outage": during_outage, "errors": replies.errors}

    try:
        result = asyncio.run(scenario())
    finally:
        stop_supervising.set()
        if supervising.is_alive():
            supervising.join(30)
    widgets: list[WidgetClient] = result["widgets"]
    restarted = app.service("daphne-1").process.pid
    assert restarted != first and app.service("daphne-2").process.pid == second

    # The survivor never stopped serving: the agent's replies (all on its connection) went on while
    # the other process was down, and none of its widgets lost its socket.
    assert result["during_outage"] and set(result["during_outage"]) == {201}, result["during_outage"]
    assert result["errors"] == 0
    on_survivor = [w for w in widgets if w.holders[0] == second]
    on_killed = [w for w in widgets if w.holders[0] == first]
    assert len(on_survivor) == len(on_killed) == VISITORS // 2
    assert all(w.holders == [second] for w in on_survivor)
    # The killed process's widgets reconnected, to a live process (the sibling, until the restart).
    assert all(len(w.holders) >= 2 and w.holders[1] in (second, restarted) for w in on_killed), [
        w.holders for w in on_killed
    ]
    assert any(w.holders[1] == second for w in on_killed)

    for widget in widgets:
        stored = result["expected"][widget.conversation]
        assert len(stored) > 3  # requested, claimed and replies
        # Exactly once and in order: the widget's view (by seq) is the database's, text for text.
        assert sorted(widget.shown) == sorted(stored) == list(range(1, len(stored) + 1))
        assert {seq: event["text"] for seq, event in widget.shown.items()} == stored
    for widget in on_survivor:  # one socket, one process: every frame once, in seq order
        assert widget.frames == sorted(set(widget.frames)) and widget.gap_fetches == 0

    # The restarted process serves again: a connection it accepted gets an answer.
    sock = placed_socket(port, pids=[restarted, second], want=restarted)
    probe = httpx.Client(base_url=app.http_url, timeout=10)
    try:
        agent.use(sock)
        status, _ = agent.post(f"/handoffs/{visitors[0][1]}/reply", {"client_id": "after", "text": "again"})
        assert status == 201
        assert probe.get("/accounts/login/").status_code == 200
    finally:
        probe.close()
    assert "daphne-1 restarted" in lines, lines
    assert not any(line.startswith("daphne-2") for line in lines), lines
    assert (logs / "daphne-1.log").exists() and (logs / "daphne-2.log").exists()  # one log per process
