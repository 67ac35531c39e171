"""The chaos soak (bench phase ``chaos``): widget conversations and their agents exchange messages
while Redis, the workers and daphne are each SIGKILLed and restarted at random moments (seeded,
recorded); at the end every client's shown events are compared with the database.

The clients run in their own process (``bench.chaosclients``); this side kills and restarts the
servers and reads the database. Figures: lost (stored, never shown), duplicated (shown twice), out
of order (shown after a later seq), mismatched (a seq shown with another event's content), and
catch-up — how long after its ``created_at`` a stored event appeared on its client.
"""

from __future__ import annotations

import contextlib
import multiprocessing
import os
import random
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import redis

from bench import chaosclients
from bench.stats import summary_ms
from pivra.stack import Service, spawn, wait_for_port
from pivra.web_processes import WEB

if TYPE_CHECKING:
    from bench.cli import Bench

SEED = 1313
TARGETS = ("redis", "worker", "daphne")
WORKERS = ("worker", "ai")  # "worker" kills the timer/sweep worker and the AI worker with it
CLIENT_AGENTS = 20


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


class ClientProcess:
    """``bench.chaosclients`` in a spawned process; commands over a pipe, one at a time."""

    def __init__(self, config: dict[str, Any]) -> None:
        context = multiprocessing.get_context("spawn")
        self.conn, child = context.Pipe()
        self.process = context.Process(target=chaosclients.main, args=(child, config), name="bench-chaos", daemon=True)
        self.process.start()
        child.close()

    def send(self, command: str, **params: Any) -> None:
        self.conn.send((command, params))

    def result(self, command: str, timeout: float, while_waiting: Callable[[], None] | None = None) -> Any:
        deadline = time.monotonic() + timeout
        while not self.conn.poll(0.5):
            if while_waiting is not None:
                while_waiting()
            if time.monotonic() > deadline:
                raise TimeoutError(f"chaos clients: {command} took longer than {timeout:.0f} s")
        status, result = self.conn.recv()
        if status != "ok":
            raise RuntimeError(f"chaos clients: {command} failed:\n{result}")
        return result

    def stop(self) -> None:
        if self.process.is_alive():
            with contextlib.suppress(Exception):
                self.send("stop")
                self.result("stop", 10)
            self.process.join(5)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(5)


# --- the schedule ---------------------------------------------------------------------------------


def plan(*, rng: random.Random, duration: float, kills_each: int, outage: tuple[float, float]) -> list[dict[str, Any]]:
    """Every target ``kills_each`` times, in a shuffled order, one per equal slot of the middle of
    the run (the first and last tenth stay calm), at a random moment of its slot."""
    kills = [target for target in TARGETS for _ in range(kills_each)]
    rng.shuffle(kills)
    start, span = duration * 0.1, duration * 0.8
    slot = span / len(kills)
    schedule = []
    for index, target in enumerate(kills):
        down = round(rng.uniform(*outage), 2)
        at = start + index * slot + rng.uniform(0, max(0.0, slot - down - 1.0))
        schedule.append({"target": target, "at_s": round(at, 2), "down_s": down})
    return schedule


def _redis(bench: Bench) -> Service:
    return next(s for s in bench.services if s.name == "redis")


def _aof_argv(argv: list[str]) -> list[str]:
    argv = list(argv)
    if "--appendonly" in argv:
        argv[argv.index("--appendonly") + 1] = "yes"
    else:
        argv += ["--appendonly", "yes"]
    return argv


def redis_enable_aof(bench: Bench) -> None:
    """The bench's Redis with the append-only file (as the run command's private Redis): switched
    on now, so what was written so far is in it, and kept on for every restart."""
    service = _redis(bench)
    client = redis.Redis.from_url(service.url)
    try:
        client.config_set("appendonly", "yes")
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            info = client.info("persistence")
            if info.get("aof_enabled") and not info.get("aof_rewrite_in_progress"):
                break
            time.sleep(0.1)
    finally:
        client.close()
    service.argv = _aof_argv(service.argv)


def target_names(bench: Bench, target: str) -> list[str]:
    """The processes a kill of ``target`` takes down ("daphne": every web process, daphne-1 … N)."""
    assert bench.app is not None
    if target == "redis":
        return ["redis"]
    if target == WEB:
        return [s.name for s in bench.app.web_services()]
    return [s.name for s in bench.app.services if s.name in (WORKERS if target == "worker" else (target,))]


def kill_target(bench: Bench, target: str) -> list[str]:
    """SIGKILL the target's process group(s), as a crash would; returns the names killed."""
    assert bench.app is not None
    names = target_names(bench, target)
    if target == "redis":
        service = _redis(bench)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(service.process.pid, signal.SIGKILL)
        service.process.wait(10)
    elif target == WEB:
        bench.app.kill(WEB)  # all web processes at once: the clients have no sibling to fail over to
    else:
        for name in names:
            bench.app.kill(name)
    return names


def restart_target(bench: Bench, target: str, names: list[str]) -> None:
    assert bench.app is not None
    if target == "redis":
        old = _redis(bench)
        new = spawn("redis", old.argv, quiet=True)  # same port, same directory: its AOF is read back
        new.url, new.cleanup_dirs = old.url, old.cleanup_dirs
        bench.services[bench.services.index(old)] = new
        port = int(old.url.rsplit(":", 1)[1].split("/", 1)[0])
        wait_for_port("127.0.0.1", port, timeout=30, process=new.process)
        return
    if target == WEB:
        bench.app.start(WEB)  # every web process not running, on the same listening socket
        return
    for name in names:
        bench.app.start(name)


class Watch:
    """Notices a process that exits by itself (one the schedule did not kill): a crash that, in the
    run command, the supervisor would have to restart. It stays down until its own kill slot."""

    def __init__(self, bench: Bench, go: float) -> None:
        self.bench, self.go = bench, go
        self.exits: list[dict[str, Any]] = []
        self.known: set[int] = set()  # pids already accounted for (exited, or killed by us)

    def check(self) -> None:
        assert self.bench.app is not None
        for service in [*self.bench.app.services, *self.bench.services]:
            pid = service.process.pid
            if pid not in self.known and service.process.poll() is not None:
                self.known.add(pid)
                at = round(time.monotonic() - self.go, 2)
                self.exits.append({"process": service.name, "noticed_at_s": at, "code": service.process.returncode})
                log(f"  {service.name} EXITED BY ITSELF (code {service.process.returncode}), noticed at {at} s")

    def sleep_until(self, moment: float) -> None:
        while (left := moment - time.monotonic()) > 0:
            self.check()
            time.sleep(min(0.5, left))

    def killing(self, bench: Bench, names: list[str]) -> None:
        assert bench.app is not None
        self.check()
        services = [*bench.app.services, *bench.services]
        self.known.update(s.process.pid for s in services if s.name in names)


def run_schedule(bench: Bench, schedule: list[dict[str, Any]], go: float, watch: Watch) -> list[dict[str, Any]]:
    done = []
    for item in schedule:
        watch.sleep_until(go + item["at_s"])
        killed_at = time.monotonic()
        watch.killing(bench, target_names(bench, item["target"]))
        names = kill_target(bench, item["target"])
        time.sleep(item["down_s"])
        restart_target(bench, item["target"], names)
        back_at = time.monotonic()
        done.append(
            {
                **item,
                "processes": names,
                "killed_at_s": round(killed_at - go, 2),
                "back_at_s": round(back_at - go, 2),
            }
        )
        log(f"  killed {'+'.join(names)} at {killed_at - go:.1f} s, back at {back_at - go:.1f} s")
    return done


# --- the comparison -------------------------------------------------------------------------------


def database_events(conversations: list[str]) -> dict[str, dict[int, tuple[str, str | None, float]]]:
    """conversation -> seq -> (kind, client id, created_at as a Unix time): every event the widget gets."""
    from conversations.models import Event

    stored: dict[str, dict[int, tuple[str, str | None, float]]] = {c: {} for c in conversations}
    rows = Event.objects.filter(conversation__public_id__in=conversations).values_list(
        "conversation__public_id", "seq", "kind", "client_id", "created_at"
    )
    for conversation, seq, kind, client_id, created_at in rows.iterator():
        stored[str(conversation)][seq] = (kind, client_id, created_at.timestamp())
    return stored


def compare(
    result: dict[str, Any], stored: dict[str, dict[int, tuple[str, str | None, float]]], kills: list[dict[str, Any]]
) -> dict[str, Any]:
    started = result["started_wall"]
    lost: list[dict[str, Any]] = []
    duplicated = out_of_order = mismatched = phantom = 0
    catch_up: list[tuple[float, str, int, str, float, str]] = []  # seconds, conversation, seq, kind, created, how
    after_ack: list[float] = []  # an agent reply: from its 201 to the agent, to its visitor showing it
    acked_at = result["reply_acked_at"]
    for chat in result["chats"]:
        conversation = chat["conversation"]
        events = stored[conversation]
        seen: set[int] = set()
        highest = 0
        for seq, wall, kind, client_id, how in chat["shown"]:
            if seq in seen:
                duplicated += 1
                continue
            seen.add(seq)
            if seq < highest:
                out_of_order += 1
            highest = max(highest, seq)
            if seq not in events:
                phantom += 1
                continue
            stored_kind, stored_client_id, created = events[seq]
            if (kind, client_id) != (stored_kind, stored_client_id):
                mismatched += 1
            if created >= started:
                catch_up.append((wall - created, conversation, seq, stored_kind, created - started, how))
                if client_id in acked_at:
                    after_ack.append(wall - acked_at[client_id])
        for seq in sorted(set(events) - seen):
            kind, _, created = events[seq]
            lost.append(
                {
                    "conversation": conversation,
                    "seq": seq,
                    "kind": kind,
                    "created_s": round(created - started, 2),
                    "held_by_client": seq in chat["held"],
                }
            )
    catch_up.sort(reverse=True)
    for kill in kills:  # how long after the restart every widget had a welcomed socket again
        if kill["target"] in ("redis", "daphne"):
            again = [min((w for w in c["welcomes"] if w > kill["killed_at_s"]), default=None) for c in result["chats"]]
            reconnected = [w for w in again if w is not None]
            kill["sockets_back_after_s"] = round(max(reconnected) - kill["back_at_s"], 2) if reconnected else None
            kill["sockets_not_back"] = len(again) - len(reconnected)
    return {
        "stored": sum(len(e) for e in stored.values()),
        "lost": len(lost),
        "lost_sample": lost[:20],
        "duplicated": duplicated,
        "out_of_order": out_of_order,
        "mismatched": mismatched,
        "phantom": phantom,
        "catch_up": summary_ms([c[0] for c in catch_up]),
        "catch_up_by_kill": by_kill(catch_up, kills),
        # created_at is taken before the commit: a write held up inside its transaction counts in
        # catch-up; this one starts when the agent had the answer (negative: pushed before that).
        "agent_reply_after_ack": summary_ms(after_ack),
        "timeline": timeline(catch_up),
        "slowest": [
            {"seconds": round(s, 3), "conversation": c, "seq": q, "kind": k, "created_s": round(t, 2), "shown_by": h}
            for s, c, q, k, t, h in catch_up[:10]
        ],
    }


def by_kill(
    catch_up: list[tuple[float, str, int, str, float, str]], kills: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Catch-up of the events stored around each kill (from 1 s before it to 5 s after the restart),
    and of the rest ("calm"), with how their clients came to show them: what each outage costs."""
    windows = [(k["killed_at_s"] - 1.0, k["back_at_s"] + 5.0) for k in kills]
    groups: list[list[tuple[float, str]]] = [[] for _ in [*kills, None]]
    for seconds, _, _, _, created, how in catch_up:
        index = next((i for i, (a, b) in enumerate(windows) if a <= created <= b), len(kills))
        groups[index].append((seconds, how))
    labels = [f"{k['target']} at {k['killed_at_s']:g} s" for k in kills] + ["calm"]
    return [
        {
            "around": label,
            **summary_ms([s for s, _ in group]),
            "shown_by": dict(Counter(how for _, how in group)),
            "over_5_s": sum(1 for s, _ in group if s > 5.0),
        }
        for label, group in zip(labels, groups, strict=True)
    ]


def timeline(catch_up: list[tuple[float, str, int, str, float, str]], step: float = 10.0) -> list[dict[str, Any]]:
    """Per ``step`` seconds of the run (by created_at): events, slowest catch-up, how they were shown."""
    buckets: dict[int, list[tuple[float, str]]] = {}
    for seconds, _, _, _, created, how in catch_up:
        buckets.setdefault(int(created // step), []).append((seconds, how))
    return [
        {
            "from_s": index * step,
            "events": len(group),
            "max_ms": round(max(s for s, _ in group) * 1000, 1),
            "shown_by": dict(Counter(how for _, how in group)),
        }
        for index, group in sorted(buckets.items())
    ]


# --- the phase ------------------------------------------------------------------------------------


def phase(bench: Bench, *, password: str) -> None:
    assert bench.app is not None
    p = bench.profile
    rng = random.Random(SEED)
    redis_enable_aof(bench)
    clients = ClientProcess(
        {
            "host": "127.0.0.1",
            "port": int(bench.app.http_url.rsplit(":", 1)[1]),
            "public_key": bench.chatbot_key,
            "password": password,
            "seed": SEED,
            "pool_size": 64,
        }
    )
    try:
        clients.send("setup", conversations=p.chaos_conversations, usernames=agent_names(bench))
        ready = clients.result("setup", timeout=900)
        log(f"  {ready['conversations']} conversations claimed by {ready['agents']} agents in {ready['seconds']} s")
        schedule = plan(rng=rng, duration=p.chaos_duration, kills_each=p.chaos_kills_each, outage=p.chaos_outage)
        clients.send("run", duration=p.chaos_duration, interval=p.chaos_interval, settle=p.chaos_settle)
        go = time.monotonic()
        watch = Watch(bench, go)
        done = run_schedule(bench, schedule, go, watch)
        result = clients.result("run", timeout=p.chaos_duration + p.chaos_settle + 300, while_waiting=watch.check)
        watch.check()
        exited = watch.exits
    finally:
        clients.stop()
    stored = database_events([c["conversation"] for c in result["chats"]])
    figure = compare(result, stored, done)
    stats = result["stats"]
    errors = len(stats["server_errors"])
    figure.update(
        {
            "value": figure["catch_up"]["max_ms"],
            "conversations": len(result["chats"]),
            "duration_s": p.chaos_duration,
            "interval_s": p.chaos_interval,
            "seed": SEED,
            "kills": done,
            "settle_s": result["settle_s"],
            "caught_up": result["caught_up"],
            "server_errors": errors,
            "exited_by_themselves": exited,
            "unavailable_503": sum(n for k, n in stats["statuses"].items() if k.endswith(" 503")),
            "clients": stats,
            "target": "0 lost, 0 duplicated, 0 out of order, no 5xx but 503; longest catch-up reported",
        }
    )
    figure["pass"] = not (
        figure["lost"]
        or figure["duplicated"]
        or figure["out_of_order"]
        or figure["mismatched"]
        or figure["phantom"]
        or errors
        or stats["refused"]
        or exited
    )
    for key in ("lost", "duplicated", "out_of_order", "mismatched", "phantom"):
        if figure[key]:
            bench.problems.append(f"chaos soak: {figure[key]} {key.replace('_', ' ')}")
    if errors:
        bench.problems.append(f"chaos soak: {errors} answers 5xx other than 503 (see figures.chaos.clients)")
    if stats["refused"]:
        bench.problems.append(f"chaos soak: {len(stats['refused'])} requests refused or given up")
    if exited:
        names = ", ".join(f"{e['process']} (noticed at {e['noticed_at_s']} s)" for e in exited)
        bench.problems.append(f"chaos soak: exited by itself: {names}")
    bench.figures["chaos"] = figure
    for window in figure["catch_up_by_kill"]:
        log(
            f"    around {window['around']}: {window['count']} events, max {window['max_ms']} ms, "
            f"shown by {window['shown_by']}"
        )
    log(
        f"  {figure['stored']} events stored; lost {figure['lost']} dup {figure['duplicated']} out of order "
        f"{figure['out_of_order']} mismatched {figure['mismatched']}; catch-up {figure['catch_up']}; "
        f"503s {figure['unavailable_503']}, other 5xx {errors}; settled in {result['settle_s']} s"
    )


def agent_names(bench: Bench) -> list[str]:
    return [f"bench-agent-{i:02d}" for i in range(min(CLIENT_AGENTS, bench.profile.agents))]


def table_rows(figures: dict[str, Any]) -> list[tuple[str, str, str, str]]:
    if "chaos" not in figures:
        return []
    figure = figures["chaos"]
    kills = len(figure["kills"]) // len(TARGETS)
    catch_up = figure["catch_up"]["max_ms"]
    return [
        (
            f"7 chaos soak, {figure['conversations']} conv x {figure['duration_s']:g} s, "
            f"Redis/worker/daphne killed {kills}x each",
            f"lost {figure['lost']}  dup {figure['duplicated']}  out of order {figure['out_of_order']}; longest "
            f"catch-up {'-' if catch_up is None else f'{catch_up / 1000:.1f} s'}; {figure['unavailable_503']} x 503, "
            f"{figure['server_errors']} other 5xx"
            + (f"; {len(figure['exited_by_themselves'])} process exits" if figure["exited_by_themselves"] else ""),
            "0 lost, 0 dup, 0 out of order",
            "PASS" if figure["pass"] else "FAIL",
        )
    ]
