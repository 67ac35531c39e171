"""``python -m bench [--profile smoke|full] [--out PATH]``: start the real stack, load it from a
separate process over loopback, print the figures against their targets and write them as JSON.
Figures 1 and 3 are measured against the floor reference server (bench/floor/) too, in the same
run, and reported as Pivra ÷ floor; Pivra's agents send those replies over their console sockets,
as the dashboard does (``--reply-via http``: through the console API instead).

Exit status: 0 when the run completed without lost or duplicated messages (a missed performance
target is reported, not an error); 1 on lost or duplicated messages; 2 when something crashed.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import gzip
import json
import os
import platform
import shutil
import signal
import sys
import tempfile
import time
import traceback
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from bench import chaos, loadgen
from bench.cpu import cpu_reference_ms, group_cpu, process_cpu
from bench.floor_stack import PG_POOL as FLOOR_PG_POOL
from bench.floor_stack import start_floor
from bench.load_replies import REPLY_VIA
from bench.loadprocess import LoadProcess
from bench.phase_handoffs import phase_claims, phase_timeouts
from bench.phase_idle import phase_idle
from bench.phase_replies import phase_latency, phase_throughput
from bench.profiles import PROFILES, TARGET_LOADER_GZIP_BYTES, Profile
from bench.seeding import seed_waiting_flow
from bench.table import table_rows
from pivra.stack import AppProcesses, Service, StackError, free_port, manage, start_app, start_postgres, start_redis

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_OUT = ROOT / "bench" / "results" / "latest.json"
PASSWORD = "bench-pass-2718"
PHASES = ("loader", "latency", "throughput", "claims", "timeouts", "idle", "chaos")
FLOOR_PHASES = {"latency", "throughput"}  # the phases that also measure the floor
POOL_SIZE = 128  # keep-alive HTTP connections of the load generator, per server under test
# Nothing is pinned: the app's web processes (PIVRA_WEB_PROCESSES, default one per core), its
# workers, the floor, PostgreSQL, Redis and the load generator share every core, scheduled by the
# OS, and Pivra and the floor are measured one after the other under that same placement. (The
# floor README's own figures put servers, PostgreSQL and Redis on one core and the load on the
# other; pinning Pivra's web processes to one core would defeat "every core serves".)
PLACEMENT = {
    "pinned": False,
    "cores": os.cpu_count(),
    "detail": "no CPU pinning: web processes, workers, beat, floor, PostgreSQL, Redis and the load "
    "generator share all cores; Pivra and the floor measured in turn under the same placement",
}


def log(message: str) -> None:
    print(f"bench: {message}", file=sys.stderr, flush=True)


def phase_loader(bench: Bench) -> None:
    data = (ROOT / "static" / "widget" / "loader.js").read_bytes()
    size = len(gzip.compress(data, compresslevel=9))
    bench.figures["loader_size"] = {
        "value": size,
        "raw_bytes": len(data),
        "gzip9_bytes": size,
        "target": f"<= {TARGET_LOADER_GZIP_BYTES} B gzipped",
        "pass": size <= TARGET_LOADER_GZIP_BYTES,
    }


def phase_chaos(bench: Bench) -> None:
    chaos.phase(bench, password=PASSWORD)  # bench/chaos.py: kills and restarts servers under load


PHASE_RUNNERS: dict[str, Callable[[Bench], None]] = {
    "loader": phase_loader,
    "latency": phase_latency,
    "throughput": phase_throughput,
    "claims": phase_claims,
    "timeouts": phase_timeouts,
    "idle": phase_idle,
    "chaos": phase_chaos,
}


class Bench:
    def __init__(
        self, profile: Profile, *, out: Path, phases: list[str], extra_env: dict[str, str], reply_via: str = "socket"
    ) -> None:
        self.profile = profile
        self.reply_via = reply_via  # figures 1 and 3: how Pivra's agents send replies (console socket or API)
        self.out = out
        self.phases = phases
        self.extra_env = extra_env
        self.figures: dict[str, Any] = {}
        self.problems: list[str] = []
        self.services: list[Service] = []
        self.app: AppProcesses | None = None
        self.load: LoadProcess | None = None
        self.log_dir = Path(tempfile.mkdtemp(prefix="pivra-bench-logs-"))
        self.chatbot_key = ""
        self.reference_ms: list[float] = []
        self.floor: Service | None = None  # the floor reference server (bench/floor/), for figures 1 and 3
        self.floor_port = 0
        self.web_processes = 0
        self.pool_size = POOL_SIZE
        self.placement = PLACEMENT

    log = staticmethod(log)

    # --- stack ----------------------------------------------------------------------------------

    def start(self) -> None:
        limit = loadgen.raise_nofile_limit()  # inherited by daphne, the worker and the load process
        log(f"RLIMIT_NOFILE {limit}")
        redis = start_redis()
        self.services.append(redis)
        postgres = start_postgres()
        self.services.append(postgres)
        port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PIVRA_", "DJANGO_"))}
        self.env = {
            **base,
            "PIVRA_DATABASE_URL": postgres.url,
            "PIVRA_REDIS_URL": redis.url,
            "PIVRA_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "PIVRA_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PIVRA_SECRET_KEY": "bench-" + "k" * 40,
            "PIVRA_DATA_DIR": str(self.log_dir / "data"),
            "PIVRA_LOG_LEVEL": "WARNING",
            "PIVRA_RATE_VISITOR_PER_MINUTE": "100000000",
            "PIVRA_RATE_IP_PER_MINUTE": "100000000",
            **self.extra_env,
        }
        log(f"PostgreSQL {postgres.url}, Redis {redis.url}; logs in {self.log_dir}")
        started = time.monotonic()
        manage("migrate", "--noinput", "-v", "0", env=self.env)
        log(f"migrated in {time.monotonic() - started:.1f} s")
        self._django_setup()
        self._seed()
        self.app = start_app(env=self.env, port=port, log_dir=self.log_dir, worker_concurrency=8)
        self.web_processes = len(self.app.web_services())
        log(f"stack up at {self.app.http_url}: {self.web_processes} web processes")
        if FLOOR_PHASES & set(self.phases):
            self.floor, self.floor_port = start_floor(
                postgres_url=postgres.url, redis_url=redis.url, log_dir=self.log_dir
            )
            log(f"floor reference server up at http://127.0.0.1:{self.floor_port}")

    def _django_setup(self) -> None:
        # The orchestrator uses the ORM for what a benchmark may not do over HTTP: seed, set the
        # chatbot's timeout, read deadlines back, and the service-level claim storm (one pooled
        # connection per claiming thread).
        os.environ.update(self.env)
        os.environ["PIVRA_DB_POOL_MAX"] = str(max(20, self.profile.claimers + 5))
        os.environ["DJANGO_SETTINGS_MODULE"] = "pivra.settings"
        import django

        django.setup()

    def _seed(self) -> None:
        from django.contrib.auth.models import User

        from chatbots.demo import demo_seed
        from chatbots.models import Membership, Workspace
        from chatbots.services import membership_add, subscription_set

        logins = demo_seed(password=PASSWORD)
        self.chatbot_key = logins.chatbot_key
        seed_waiting_flow(chatbot_key=logins.chatbot_key)
        workspace = Workspace.objects.get(slug="demo")
        subscription_set(workspace=workspace, plan_code="business")  # seats for the bench's agents
        for index in range(self.profile.agents):
            username = f"bench-agent-{index:02d}"
            user = User.objects.filter(username=username).first() or User.objects.create_user(
                username, f"{username}@example.com", PASSWORD, first_name=f"Agent{index:02d}"
            )
            membership_add(workspace=workspace, user=user, role=Membership.Role.AGENT)

    def stop(self) -> None:
        if self.load is not None:
            self.load.stop()
        if self.app is not None:
            self.app.stop()
        if self.floor is not None:
            self.floor.stop()
        from django.db import connections

        with contextlib.suppress(Exception):  # first: PostgreSQL's SIGTERM waits for open sessions
            connections.close_all()
        for service in reversed(self.services):
            service.stop()

    def cpu_snapshot(self) -> dict[str, float]:
        assert self.app is not None and self.load is not None
        web = {service.name: group_cpu(service.process.pid) for service in self.app.web_services()}
        snapshot = {"daphne": sum(web.values()), **web}  # "daphne": every web process together
        for name in ("worker", "beat"):
            snapshot[name] = group_cpu(self.app.service(name).process.pid)
        for service in [*self.services, *([self.floor] if self.floor is not None else [])]:
            snapshot[service.name] = group_cpu(service.process.pid)
        snapshot["loadgen"] = process_cpu(self.load.process.pid or 0)
        return snapshot

    @contextlib.contextmanager
    def cpu(self, into: dict[str, Any], per: str | None = None) -> Iterator[None]:
        """CPU seconds each process spent during the block (and per item, when ``into[per]`` counts them)."""
        before, started = self.cpu_snapshot(), time.monotonic()
        yield
        after, wall = self.cpu_snapshot(), time.monotonic() - started
        used = {k: round(after[k] - before.get(k, 0.0), 2) for k in after}
        into["cpu_s"] = {**used, "wall": round(wall, 2)}
        if per and into.get(per):
            into["cpu_ms_per_item"] = {k: round(v * 1000 / into[per], 3) for k, v in used.items()}

    # --- phases ---------------------------------------------------------------------------------

    def run(self) -> int:
        started = time.monotonic()
        self.reference_ms = [cpu_reference_ms()]
        self.start()
        assert self.app is not None
        self.load = LoadProcess(
            {
                "host": "127.0.0.1",
                "port": int(self.app.http_url.rsplit(":", 1)[1]),
                "public_key": self.chatbot_key,
                "password": PASSWORD,
                "daphne_pids": [service.process.pid for service in self.app.web_services()],
                "pool_size": self.pool_size,
            }
        )
        logins = self.load.call(
            "login", timeout=300, usernames=[f"bench-agent-{i:02d}" for i in range(self.profile.agents)]
        )
        log(f"{logins['agents']} agents logged in over HTTP in {logins['seconds']} s")
        for phase in PHASES:
            if phase in self.phases:
                log(f"phase {phase}")
                PHASE_RUNNERS[phase](self)
        total = time.monotonic() - started
        self.report(total)
        return 1 if self.problems else 0

    # --- report ---------------------------------------------------------------------------------

    def report(self, total_seconds: float) -> None:
        rows = table_rows(self.figures, self.profile)
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=True)).rstrip() for row in rows]
        lines.insert(1, "  ".join("-" * w for w in widths))
        self.reference_ms.append(cpu_reference_ms())
        start_ms, end_ms = self.reference_ms[0], self.reference_ms[-1]
        print(
            f"\nPivra bench, profile {self.profile.name}: {total_seconds:.0f} s on {os.cpu_count()} CPUs, "
            f"{self.web_processes} web processes"
        )
        print(f"CPU reference (a fixed pure-Python loop): {start_ms:.0f} ms at the start, {end_ms:.0f} ms at the end\n")
        print("\n".join(lines))
        if self.problems:
            print("\nPROBLEMS (exit 1):\n  " + "\n  ".join(self.problems))
        print()
        document = {
            "profile": self.profile.name,
            "finished_at": dt.datetime.now(dt.UTC).isoformat(),
            "seconds": round(total_seconds, 1),
            "machine": {
                "cpus": os.cpu_count(),
                "python": platform.python_version(),
                "platform": platform.platform(),
                "cpu_reference_ms": self.reference_ms,
            },
            "app_env_overrides": self.extra_env,
            "web_processes": self.web_processes,
            "reply_via": self.reply_via,
            "floor": None
            if self.floor is None
            else {"processes": 1, "pg_pool": FLOOR_PG_POOL, "source": "bench/floor/ (vendored unchanged)"},
            "placement": self.placement,
            "load": {"event_loop": loadgen.event_loop_name(), "http_pool": self.pool_size},
            "figures": self.figures,
            "table": [dict(zip(("figure", "measured", "target", "result"), row, strict=True)) for row in rows[1:]],
            "problems": self.problems,
        }
        self.out.parent.mkdir(parents=True, exist_ok=True)
        self.out.write_text(json.dumps(document, indent=2, default=str) + "\n")
        log(f"wrote {self.out}")


def _signals_to_keyboard_interrupt() -> None:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n\n")[0])
    parser.add_argument("--profile", choices=sorted(PROFILES), default="full")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT, help=f"JSON results (default {DEFAULT_OUT})")
    parser.add_argument(
        "--phases", default=",".join(PHASES), help=f"comma-separated subset of {','.join(PHASES)} (default: all)"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="PIVRA_X=VALUE",
        help="extra environment for the app processes (tuning experiments), repeatable",
    )
    parser.add_argument(
        "--reply-via",
        choices=REPLY_VIA,
        default="socket",
        help="figures 1 and 3: agents reply over their console socket (default, as the dashboard) or the console API",
    )
    parser.add_argument("--keep-logs", action="store_true", help="keep the server logs even when all went well")
    args = parser.parse_args(argv)
    phases = [p.strip() for p in args.phases.split(",") if p.strip()]
    unknown = sorted(set(phases) - set(PHASES))
    if unknown:
        parser.error(f"unknown phases: {', '.join(unknown)}")
    extra_env = {}
    for item in args.set:
        key, sep, value = item.partition("=")
        if not sep or not key:
            parser.error(f"--set wants KEY=VALUE, got {item!r}")
        extra_env[key] = value
    _signals_to_keyboard_interrupt()
    bench = Bench(
        PROFILES[args.profile], out=args.out.resolve(), phases=phases, extra_env=extra_env, reply_via=args.reply_via
    )
    code = 2
    try:
        code = bench.run()
    except KeyboardInterrupt:
        log("interrupted")
        code = 130
    except StackError as exc:
        log(f"error: {exc}")
    except Exception:
        traceback.print_exc()
        log(f"crashed; server logs kept in {bench.log_dir}")
    finally:
        bench.stop()
    if code == 0 and not args.keep_logs:
        shutil.rmtree(bench.log_dir, ignore_errors=True)
    elif code != 0 or args.keep_logs:
        log(f"server logs in {bench.log_dir}")
    return code
