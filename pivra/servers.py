"""The servers the stack runs on this machine: private Redis and PostgreSQL, child processes in
their own process groups, and the system packages they need (installed with apt-get when root).

Split from ``pivra.stack`` (which composes them into the run and test commands); like it, this
module never loads Django's settings, so a database can be started before they are read.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PYTHON = sys.executable


class StackError(RuntimeError):
    """Something the stack needs is missing or failed to start; the message says what to do."""


def log(message: str) -> None:
    print(f"pivra: {message}", file=sys.stderr, flush=True)


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def wait_for_port(host: str, port: int, *, timeout: float, process: subprocess.Popen[bytes] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise StackError(f"process {process.args!r} exited with code {process.returncode} while starting")
        with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.5):
            return
        time.sleep(0.1)
    raise StackError(f"nothing answered on {host}:{port} within {timeout:.0f} s")


# --- system packages -------------------------------------------------------------------------

APT_PACKAGES = {
    "redis-server": "redis-server",
    "chromium": "chromium",
    "postgres": "postgresql",
    "nginx": "nginx",
    "xgettext": "gettext",
    "msgfmt": "gettext",
}


def _postgres_bin_dir() -> Path | None:
    found = shutil.which("postgres") or shutil.which("initdb")
    if found:
        return Path(os.path.realpath(found)).parent
    candidates = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), reverse=True)
    return candidates[0].parent if candidates else None


def _have(program: str) -> bool:
    if program == "postgres":
        return _postgres_bin_dir() is not None
    return shutil.which(program) is not None


def ensure_system_programs(programs: Sequence[str]) -> None:
    """Install missing programs with apt-get when root; otherwise stop with the exact command to run."""
    missing = [p for p in programs if not _have(p)]
    if not missing:
        return
    packages = [APT_PACKAGES[p] for p in missing]
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise StackError(
            f"missing {', '.join(missing)}. Install with: sudo apt-get update && sudo apt-get install -y "
            + " ".join(packages)
        )
    log(f"installing {' '.join(packages)} with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    subprocess.run(["apt-get", "update", "-qq"], check=True, env=env)
    subprocess.run(["apt-get", "install", "-y", "-qq", "--no-install-recommends", *packages], check=True, env=env)
    still = [p for p in programs if not _have(p)]
    if still:
        raise StackError(f"apt-get ran but {', '.join(still)} is still missing")


# --- services --------------------------------------------------------------------------------


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    url: str = ""
    cleanup_dirs: list[Path] = field(default_factory=list)
    # How it was started, so it can be restarted the same way (tests and benchmarks kill servers).
    argv: list[str] = field(default_factory=list)
    env: dict[str, str] | None = None
    log_file: Path | None = None
    quiet: bool = False
    pass_fds: tuple[int, ...] = ()  # inherited open, e.g. a web process's shared listening socket
    user: str | None = None  # run as this user (PostgreSQL refuses root)

    def terminate(self) -> None:
        """SIGTERM to the process group, if it still runs (``stop`` then waits for it)."""
        if self.process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.process.pid, signal.SIGTERM)

    def stop(self, timeout: float = 15.0, *, terminated: bool = False) -> None:
        if self.process.poll() is None:
            if not terminated:
                self.terminate()
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(5)
        for directory in self.cleanup_dirs:
            shutil.rmtree(directory, ignore_errors=True)


def stop_services(services: Sequence[Service], *, timeout: float = 15.0) -> None:
    """SIGTERM every service first, then wait for each: N processes stop in the slowest one's time,
    not in the sum of theirs (Ctrl-C on a stack with a web process per core)."""
    for service in services:
        service.terminate()
    for service in services:
        service.stop(timeout, terminated=True)


def _die_with_parent() -> Callable[[], None] | None:
    """A ``preexec_fn`` making the child receive SIGTERM when the launcher dies, even by SIGKILL (Linux
    PR_SET_PDEATHSIG), so no orphan keeps the web port or the Redis data directory. None elsewhere.

    Only from the main thread: the kernel sends the signal when the *thread* that forked the child
    exits, so a child started from a helper thread (a test's supervisor) would die with that thread.
    The launcher spawns from its main thread only, before or between its supervisor's checks; a
    ``preexec_fn`` is unsafe only if another thread holds a lock at fork time, and this one calls
    nothing but prctl and getppid."""
    if not sys.platform.startswith("linux") or threading.current_thread() is not threading.main_thread():
        return None
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)
    parent = os.getpid()
    pr_set_pdeathsig = 1

    def preexec() -> None:
        libc.prctl(pr_set_pdeathsig, signal.SIGTERM, 0, 0, 0)
        if os.getppid() != parent:  # the launcher died before prctl took effect
            os._exit(1)

    return preexec


def spawn(
    name: str,
    argv: Sequence[str],
    *,
    env: dict[str, str] | None = None,
    quiet: bool = False,
    user: str | None = None,
    log_file: Path | None = None,
    pass_fds: Sequence[int] = (),
) -> Service:
    """Start a child in its own process group, so stopping it stops its children too; it dies with the
    launcher (``_die_with_parent``). ``pass_fds`` stay open in the child under the same numbers (a
    web process's shared listening socket)."""
    stdout: int | None = None
    handle = None
    if log_file is not None:
        handle = open(log_file, "ab")  # noqa: SIM115 - the child owns the handle for its lifetime
        stdout = handle.fileno()
    elif quiet:
        stdout = subprocess.DEVNULL
    process = subprocess.Popen(
        list(argv),
        cwd=ROOT,
        env=env,
        stdout=stdout,
        stderr=subprocess.STDOUT if stdout is not None else None,
        start_new_session=True,
        user=user,
        pass_fds=tuple(pass_fds),
        preexec_fn=_die_with_parent(),
    )
    if handle is not None:
        handle.close()
    service = Service(name=name, process=process, argv=list(argv), env=env, log_file=log_file, quiet=quiet)
    service.pass_fds = tuple(pass_fds)
    service.user = user
    return service


def start_redis(*, port: int | None = None, quiet: bool = True, data_dir: Path | None = None) -> Service:
    """A Redis on loopback. With ``data_dir`` it persists (AOF, fsync every second) into that directory,
    which survives it: a restart with the same directory finds the queued tasks again (the run
    command). Without one it keeps nothing and its temporary directory is removed when it stops (tests)."""
    ensure_system_programs(["redis-server"])
    port = port or free_port()
    if data_dir is not None:
        data_dir.mkdir(parents=True, exist_ok=True)
        workdir = data_dir
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"]
    else:
        workdir = Path(tempfile.mkdtemp(prefix="pivra-redis-"))
        persistence = ["--appendonly", "no"]
    service = spawn(
        "redis",
        [
            "redis-server",
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            *persistence,
            "--dir",
            str(workdir),
            "--maxclients",
            "20000",
        ],
        quiet=quiet,
    )
    if data_dir is None:
        service.cleanup_dirs.append(workdir)
    service.url = f"redis://127.0.0.1:{port}/0"
    # A large AOF takes a moment to load; the port answers only once it is loaded.
    wait_for_port("127.0.0.1", port, timeout=60, process=service.process)
    return service


def start_postgres(*, port: int | None = None) -> Service:
    """A throw-away PostgreSQL cluster on loopback (fsync off: it is for tests and benchmarks)."""
    ensure_system_programs(["postgres"])
    bin_dir = _postgres_bin_dir()
    assert bin_dir is not None
    port = port or free_port()
    workdir = Path(tempfile.mkdtemp(prefix="pivra-pg-"))
    user = None
    if os.geteuid() == 0:
        # PostgreSQL refuses to run as root: run it as the system's postgres user.
        user = "postgres"
        shutil.chown(workdir, user=user)
    data = workdir / "data"
    initdb = subprocess.run(
        [
            str(bin_dir / "initdb"),
            "-D",
            str(data),
            "-U",
            "postgres",
            "-A",
            "trust",
            "-E",
            "UTF8",
            "--locale=C",
            "--no-sync",
        ],
        capture_output=True,
        user=user,
        cwd="/",
    )
    if initdb.returncode != 0:
        shutil.rmtree(workdir, ignore_errors=True)
        raise StackError(f"initdb failed: {initdb.stderr.decode(errors='replace').strip()}")
    service = spawn(
        "postgres",
        [
            str(bin_dir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(port),
            "-k",
            str(workdir),
            "-c",
            "listen_addresses=127.0.0.1",
            "-c",
            "fsync=off",
            "-c",
            "synchronous_commit=off",
            "-c",
            "full_page_writes=off",
            "-c",
            "max_connections=300",
            "-c",
            "shared_buffers=256MB",
        ],
        quiet=True,
        user=user,
    )
    service.cleanup_dirs.append(workdir)
    wait_for_port("127.0.0.1", port, timeout=30, process=service.process)
    service.url = f"postgresql://postgres@127.0.0.1:{port}/postgres"
    _wait_for_postgres_ready(service.url)
    return service


def _wait_for_postgres_ready(url: str, timeout: float = 30) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with psycopg.connect(url, connect_timeout=2):
                return
        except psycopg.OperationalError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
