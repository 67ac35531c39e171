"""CPU accounting: where the time goes, per process (from /proc), and a fixed reference loop that
says how fast this machine's CPU was during the run."""

from __future__ import annotations

import os
import time

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _stat_fields(pid: int) -> list[str]:
    with open(f"/proc/{pid}/stat") as stat:
        return stat.read().rsplit(")", 1)[1].split()


def process_cpu(pid: int) -> float:
    try:
        fields = _stat_fields(pid)
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / CLK_TCK


def group_cpu(pgid: int) -> float:
    """CPU seconds of every live process in a process group and of every descendant of its leader
    (PostgreSQL's backends, which put themselves in groups of their own with setsid())."""
    stats: dict[int, tuple[int, int, float]] = {}  # pid -> (parent, group, CPU seconds)
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            fields = _stat_fields(int(entry))
        except OSError:
            continue
        stats[int(entry)] = (int(fields[1]), int(fields[2]), (int(fields[11]) + int(fields[12])) / CLK_TCK)
    members = {pid for pid, (_, group, _) in stats.items() if group == pgid}
    grown = True
    while grown:
        children = {pid for pid, (parent, _, _) in stats.items() if parent in members and pid not in members}
        members |= children
        grown = bool(children)
    return sum(stats[pid][2] for pid in members)


def cpu_reference_ms() -> float:
    """Milliseconds of CPU for a fixed pure-Python loop (best of three). Shared cloud CPUs change
    speed from hour to hour; this says how fast this one was, so runs can be compared."""
    best = float("inf")
    for _ in range(3):
        started = time.process_time()
        total = 0
        for i in range(2_000_000):
            total += i * i
        best = min(best, time.process_time() - started)
    return best * 1000
