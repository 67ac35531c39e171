"""Several daphne processes serving one address: the launcher binds and listens on one TCP socket
and hands it to each process (daphne ``--fd``), so every core serves and a process that dies takes
only its own connections with it.

Why one shared socket rather than a port each or SO_REUSEPORT: every process accepts from the same
queue, so a connection waits for whichever process is free and never for one that is dead or still
starting (with SO_REUSEPORT a dead process's queue would reset the connections the kernel hashed
to it). The launcher keeps the socket open for its lifetime, so a restarted process gets the same
one. Twisted adopts it without listening again or shutting it down at exit (``tcp.Port``'s
pre-existing socket), so no process can close it for its siblings. An IPv6 socket is handed over
as systemd hands one (``daphne_on_socket``): daphne's ``--fd`` can only describe an IPv4 one.

Like ``pivra.stack``, this module never loads Django's settings.
"""

from __future__ import annotations

import contextlib
import errno
import os
import signal
import socket
import subprocess
import time
from collections.abc import Mapping
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from pivra.env import env_int
from pivra.servers import StackError

WEB = "daphne"  # the group name: AppProcesses.kill("daphne") / .start("daphne") act on every web process
LISTEN_BACKLOG = 4096  # connections the kernel queues for the processes (capped by net.core.somaxconn)
MAX_WEB_PROCESSES = 256


def web_process_count(*, env: Mapping[str, str]) -> int:
    """PIVRA_WEB_PROCESSES, default the number of cores this process may run on (a container's or
    taskset's CPU set, not the machine's); a bad value stops the launcher."""
    try:
        return env_int("PIVRA_WEB_PROCESSES", usable_cores(), min_value=1, max_value=MAX_WEB_PROCESSES, environ=env)
    except ImproperlyConfigured as exc:
        raise StackError(f"configuration error: {exc}") from None


def usable_cores() -> int:
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0)) or 1
    return os.cpu_count() or 1


def web_service_name(number: int) -> str:
    return f"{WEB}-{number}"


def is_web_service(name: str) -> bool:
    return name.startswith(f"{WEB}-")


def listen(host: str, port: int, *, backlog: int = LISTEN_BACKLOG) -> socket.socket:
    """The shared listening socket. Non-blocking, as Twisted requires of an adopted socket: every
    process is woken by a new connection and all but one find nothing to accept."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(backlog)
    except OSError as exc:
        sock.close()
        hint = ""
        if exc.errno == errno.EADDRINUSE:
            # Often the web processes of a launcher that was killed (kill -9) before they started.
            hint = f"; port {port} is taken: `ss -ltnp 'sport = :{port}'` shows the process holding it"
        raise StackError(f"cannot listen on {host}:{port}: {exc.strerror or exc}{hint}") from None
    sock.setblocking(False)
    return sock


# Run before daphne in an IPv6 web process (``python -c``): it moves the shared socket to fd 3 and
# describes it as systemd would (LISTEN_PID/LISTEN_FDS/LISTEN_FDNAMES), then execs daphne in the
# same process (same pid, so LISTEN_PID stays true). Twisted's ``systemd:`` endpoint names the
# address family, which its ``fd:`` endpoint cannot: daphne's ``--fd`` assumes IPv4, and
# ``fd:domain=INET6`` is passed to the reactor as a string (UnsupportedAddressFamily).
AS_SYSTEMD_SOCKET = (
    "import os, sys; fd = int(sys.argv[1]); os.dup2(fd, 3); fd != 3 and os.close(fd); "
    "os.environ.update(LISTEN_PID=str(os.getpid()), LISTEN_FDS='1', LISTEN_FDNAMES='pivra-web'); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[2:]])"
)
SYSTEMD_INET6_ENDPOINT = "systemd:domain=INET6:index=0"


def daphne_on_socket(python: str, sock: socket.socket) -> list[str]:
    """The start of the command line of a daphne process serving ``sock``: ``--fd N`` for IPv4
    (the Twisted endpoint ``fd:fileno=N``, daphne/endpoints.py), the systemd hand-over for IPv6."""
    if sock.family == socket.AF_INET6:
        return [python, "-c", AS_SYSTEMD_SOCKET, str(sock.fileno()), "-m", "daphne", "-e", SYSTEMD_INET6_ENDPOINT]
    return [python, "-m", "daphne", "--fd", str(sock.fileno())]


# --- whether a process accepts (Linux /proc) ---------------------------------------------------


def socket_inode(sock: socket.socket) -> int:
    return os.stat(sock.fileno()).st_ino


def socket_inodes(pid: int) -> dict[int, int]:
    """fd number → socket inode, for the process's sockets."""
    found: dict[int, int] = {}
    directory = Path(f"/proc/{pid}/fd")
    with contextlib.suppress(OSError):
        for entry in directory.iterdir():
            with contextlib.suppress(OSError):
                target = os.readlink(entry)
                if target.startswith("socket:["):
                    found[int(entry.name)] = int(target[8:-1])
    return found


def _epoll_targets(pid: int) -> set[int]:
    """The fds the process's epoll instances watch (``tfd`` lines of /proc/<pid>/fdinfo)."""
    targets: set[int] = set()
    with contextlib.suppress(OSError):
        for entry in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):
                if os.readlink(entry) != "anon_inode:[eventpoll]":
                    continue
                for line in Path(f"/proc/{pid}/fdinfo/{entry.name}").read_text().splitlines():
                    if line.startswith("tfd:"):
                        targets.add(int(line.split()[1]))
    return targets


def is_accepting(pid: int, listener_inode: int) -> bool:
    """Whether the process's event loop watches the shared socket, i.e. accepts connections from it
    (daphne's asyncio reactor adopts a dup of the fd it was given, so the inode is compared)."""
    targets = _epoll_targets(pid)
    return any(fd in targets and inode == listener_inode for fd, inode in socket_inodes(pid).items())


def wait_until_accepting(process: subprocess.Popen[bytes], listener: socket.socket, *, timeout: float) -> None:
    """Wait until a started web process accepts on the shared socket. A port check cannot tell: the
    kernel completes handshakes on the shared queue whether this process is up or not."""
    inode = socket_inode(listener)
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise StackError(f"process {process.args!r} exited with code {process.returncode} while starting")
        if not Path("/proc/self/fdinfo").is_dir():  # not Linux: the process is at least running
            return
        if is_accepting(process.pid, inode):
            return
        time.sleep(0.1)
    raise StackError(f"process {process.args!r} did not accept on its socket within {timeout:.0f} s")


def wait_until_accepting_or_kill(process: subprocess.Popen[bytes], listener: socket.socket, *, timeout: float) -> None:
    """``wait_until_accepting``; a process that hangs instead is killed before the error is raised,
    so whoever supervises it sees it exited and restarts it (a hung one would look alive forever)."""
    try:
        wait_until_accepting(process, listener, timeout=timeout)
    except StackError:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(10)
        raise
