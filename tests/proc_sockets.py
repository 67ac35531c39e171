"""Which daphne process holds which connection, read from Linux /proc: for the two-process tests
(tests/web_process_clients.py) and the bench. The one parser of /proc/net/tcp{,6}; the per-process
socket table is pivra.web_processes.socket_inodes (the launcher's own readiness check uses it)."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterable
from pathlib import Path

from pivra.web_processes import socket_inodes

ESTABLISHED = "01"


def _tcp_rows() -> Iterable[tuple[int, int, str, int]]:
    """(local port, remote port, state, inode) of every IPv4 and IPv6 TCP socket."""
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with contextlib.suppress(OSError):
            for line in Path(table).read_text().splitlines()[1:]:
                fields = line.split()
                local, remote = fields[1], fields[2]
                yield int(local.rsplit(":", 1)[1], 16), int(remote.rsplit(":", 1)[1], 16), fields[3], int(fields[9])


def connection_holder(pids: Iterable[int], *, server_port: int, client_port: int) -> int | None:
    """Which of ``pids`` holds the server side of the loopback connection from ``client_port``
    (None while no process has accepted it yet)."""
    inodes = {inode for local, remote, _, inode in _tcp_rows() if local == server_port and remote == client_port}
    if not inodes:
        return None
    return next((pid for pid in pids if inodes & set(socket_inodes(pid).values())), None)


def wait_for_holder(pids: Iterable[int], *, server_port: int, client_port: int, seconds: float = 5) -> int | None:
    """``connection_holder`` once some process has accepted the connection (a connect returns when
    the kernel completed the handshake, before any process accepted it); None after ``seconds``."""
    pids = list(pids)
    deadline = time.monotonic() + seconds
    while True:
        holder = connection_holder(pids, server_port=server_port, client_port=client_port)
        if holder is not None or time.monotonic() > deadline:
            return holder
        time.sleep(0.01)


def connections_by_pid(pids: Iterable[int], *, server_port: int) -> dict[int, int]:
    """How many established connections on ``server_port`` each process holds (the listener excluded)."""
    established = {inode for local, _, state, inode in _tcp_rows() if local == server_port and state == ESTABLISHED}
    return {pid: len(established & set(socket_inodes(pid).values())) for pid in pids}
