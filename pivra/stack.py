"""Run Pivra's whole stack on one machine: private Redis/PostgreSQL (``pivra.servers``), daphne, Celery worker and beat.

Used by the two README commands (``scripts/run``, ``scripts/test``), the browser tests and the
benchmarks. It never loads Django's settings, so it can start the database before they are read.

    python -m pivra.stack run            # demo: redis + migrate + seed + daphne + workers + beat
    python -m pivra.stack test [ARGS]    # quality gates + pytest on private PostgreSQL and Redis
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Collection, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from django.core.exceptions import ImproperlyConfigured

from pivra.env import env_bool, env_int, env_is_set
from pivra.servers import (
    PYTHON,
    ROOT,
    Service,
    StackError,
    ensure_system_programs,
    free_port,
    log,
    spawn,
    start_postgres,
    start_redis,
    stop_services,
    wait_for_port,
)
from pivra.supervisor import Supervisor
from pivra.web_processes import (
    WEB,
    daphne_on_socket,
    is_web_service,
    listen,
    wait_until_accepting_or_kill,
    web_process_count,
    web_service_name,
)

# The stack's public names, the servers' included: tests and the bench import them from here.
__all__ = [
    "PYTHON",
    "ROOT",
    "AppProcesses",
    "Service",
    "StackError",
    "celery_worker_argv",
    "daphne_argv",
    "ensure_system_programs",
    "free_port",
    "log",
    "main",
    "manage",
    "private_services",
    "spawn",
    "start_app",
    "start_postgres",
    "start_redis",
    "wait_for_port",
    "web_process_count",
]

ROLES = ("web", "worker", "ai", "deliveries", "beat")


def manage(*args: str, env: dict[str, str]) -> None:
    result = subprocess.run([PYTHON, "manage.py", *args], cwd=ROOT, env=env)
    if result.returncode != 0:
        raise StackError(f"manage.py {' '.join(args)} failed (exit {result.returncode})")


@dataclass
class AppProcesses:
    """daphne processes ("daphne-1" … "daphne-N", sharing ``listener``) + Celery worker + AI worker +
    delivery worker + Celery beat against one database and one Redis.

    The name "daphne" means every web process: ``kill("daphne")`` kills them all, ``start("daphne")``
    starts those not running, ``service("daphne")`` is the first. The listening socket stays open
    until ``stop()``, so a web process started again serves the same address."""

    services: list[Service]
    http_url: str
    listener: socket.socket | None = field(default=None, repr=False)

    def stop(self) -> None:
        stop_services(list(reversed(self.services)))
        if self.listener is not None:
            self.listener.close()

    def web_services(self) -> list[Service]:
        return [s for s in self.services if is_web_service(s.name)]

    def service(self, name: str) -> Service:
        if name == WEB:
            return self.web_services()[0]
        return next(s for s in self.services if s.name == name)

    def _named(self, name: str) -> list[Service]:
        return self.web_services() if name == WEB else [self.service(name)]

    def kill(self, name: str) -> None:
        """SIGKILL a process (every web process for "daphne"), as a crash would (no graceful shutdown)."""
        for service in self._named(name):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(service.process.pid, signal.SIGKILL)
            service.process.wait(10)

    def start(self, name: str) -> None:
        """Start a stopped or killed process again with its original command and environment (for
        "daphne": every web process that is not running). A web process gets the same listening
        socket; this returns once it accepts on it, and one that does not within 60 s is killed
        (the supervisor then restarts it with backoff, as any process that exited)."""
        olds = [s for s in self.web_services() if s.process.poll() is not None] if name == WEB else [self.service(name)]
        for old in olds:
            new = spawn(old.name, old.argv, env=old.env, quiet=old.quiet, log_file=old.log_file, pass_fds=old.pass_fds)
            new.cleanup_dirs = old.cleanup_dirs
            self.services[self.services.index(old)] = new
        for new in (self.service(old.name) for old in olds):
            if is_web_service(new.name) and self.listener is not None:
                wait_until_accepting_or_kill(new.process, self.listener, timeout=60)


def daphne_argv(
    *, env: dict[str, str], listener: socket.socket | None = None, host: str = "127.0.0.1", port: int = 8000
) -> list[str]:
    """daphne's command line: serving the shared ``listener`` (pivra/web_processes.py ``daphne_on_socket``),
    or binding ``host:port`` itself without one. Never ``--proxy-headers``: daphne takes the leftmost
    X-Forwarded-For address, which the client writes itself. pivra/proxy.py reads the trusted hop
    instead (only with PIVRA_BEHIND_PROXY). A bad value of that variable still stops the supervisor
    before it starts."""
    try:
        env_bool("PIVRA_BEHIND_PROXY", False, environ=env)
    except ImproperlyConfigured as exc:
        raise StackError(f"configuration error: {exc}") from None
    if listener is not None:
        return [*daphne_on_socket(PYTHON, listener), "pivra.asgi:application"]
    return [PYTHON, "-m", "daphne", "-b", host, "-p", str(port), "pivra.asgi:application"]


def celery_worker_argv(
    *, name: str, queues: Sequence[str] | None, concurrency: int, loglevel: str = "WARNING"
) -> list[str]:
    """A Celery worker on a thread pool (its tasks wait on the database, Redis and other servers).
    ``queues=None`` consumes every queue, as a worker started without ``-Q`` does."""
    argv = [PYTHON, "-m", "celery", "-A", "pivra", "worker", "--pool", "threads", "--concurrency", str(concurrency)]
    if queues:
        argv += ["--queues", ",".join(queues)]
    return [*argv, "--loglevel", loglevel, "--hostname", f"{name}@%h", "--without-gossip", "--without-mingle"]


def ai_worker_concurrency(*, env: dict[str, str]) -> int:
    """Threads of the AI worker: PIVRA_AI_WORKER_CONCURRENCY, default 16. Its AI calls are capped
    per chatbot and per workspace below that (PIVRA_AI_CONCURRENCY_PER_*), so no tenant takes them all."""
    try:
        return env_int("PIVRA_AI_WORKER_CONCURRENCY", 16, min_value=1, max_value=1000, environ=env)
    except ImproperlyConfigured as exc:
        raise StackError(f"configuration error: {exc}") from None


def start_app(
    *,
    env: dict[str, str],
    host: str = "127.0.0.1",
    port: int = 8000,
    quiet: bool = False,
    log_dir: Path | None = None,
    worker_concurrency: int = 8,
    delivery_concurrency: int = 32,
    ai_concurrency: int | None = None,
    web_processes: int | None = None,
    roles: Collection[str] = ROLES,
) -> AppProcesses:
    """Start the web processes, a worker, an AI worker, a delivery worker and beat (``roles`` picks
    some: an extra app node runs only "web"); wait until every web process accepts.

    ``web_processes`` daphne processes (default PIVRA_WEB_PROCESSES, else one per core) serve one
    socket bound here (pivra/web_processes.py); each logs to its own ``daphne-<n>.log``.

    Each queue has its own worker (see CELERY_TASK_QUEUES in pivra/settings.py): AI replies wait on
    an LLM endpoint (up to PIVRA_LLM_DEADLINE each) and deliveries on other people's servers (up to
    the webhook timeout each), so neither may ever take the slots that run handoff timeouts, sweeps
    and push repair. Threads suit that wait-bound work. ``ai_concurrency`` defaults to
    PIVRA_AI_WORKER_CONCURRENCY (16)."""
    unknown = set(roles) - set(ROLES)
    if unknown:
        raise StackError(f"unknown roles {sorted(unknown)}: choose from {', '.join(ROLES)}")
    if ai_concurrency is None and "ai" in roles:
        ai_concurrency = ai_worker_concurrency(env=env)
    if web_processes is None:
        web_processes = web_process_count(env=env)
    elif web_processes < 1:
        raise StackError(f"web_processes={web_processes}: at least 1")

    def log_file(name: str) -> Path | None:
        return (log_dir / f"{name}.log") if log_dir else None

    listener = listen(host, port) if "web" in roles else None
    try:
        services = _start_services(
            env=env,
            port=port,
            quiet=quiet,
            log_file=log_file,
            listener=listener,
            web_processes=web_processes,
            roles=roles,
            worker_concurrency=worker_concurrency,
            delivery_concurrency=delivery_concurrency,
            ai_concurrency=ai_concurrency or 1,
        )
    except BaseException:
        if listener is not None:
            listener.close()
        raise
    app = AppProcesses(services=services, http_url=f"http://{host}:{port}", listener=listener)
    try:
        for web in app.web_services():
            assert listener is not None
            wait_until_accepting_or_kill(web.process, listener, timeout=60)
    except BaseException:
        app.stop()
        raise
    return app


def _start_services(
    *,
    env: dict[str, str],
    port: int,
    quiet: bool,
    log_file: Callable[[str], Path | None],
    listener: socket.socket | None,
    web_processes: int,
    roles: Collection[str],
    worker_concurrency: int,
    delivery_concurrency: int,
    ai_concurrency: int,
) -> list[Service]:
    beat_schedule = Path(tempfile.mkdtemp(prefix="pivra-beat-")) / "schedule"
    commands: list[tuple[str, list[str]]] = []
    if listener is not None:
        commands += [
            (web_service_name(n), daphne_argv(env=env, listener=listener)) for n in range(1, web_processes + 1)
        ]
    for role, queue, concurrency in (
        ("worker", "celery", worker_concurrency),
        ("ai", "ai", ai_concurrency),
        ("deliveries", "deliveries", delivery_concurrency),
    ):
        if role in roles:
            commands.append(
                (role, celery_worker_argv(name=f"pivra-{role}-{port}", queues=[queue], concurrency=concurrency))
            )
    if "beat" in roles:
        beat = [
            PYTHON,
            "-m",
            "celery",
            "-A",
            "pivra",
            "beat",
            "--loglevel",
            "WARNING",
            "--schedule",
            str(beat_schedule),
        ]
        commands.append(("beat", beat))
    services: list[Service] = []
    try:
        for name, argv in commands:
            fds = (listener.fileno(),) if listener is not None and is_web_service(name) else ()
            services.append(spawn(name, argv, env=env, quiet=quiet, log_file=log_file(name), pass_fds=fds))
    except BaseException:
        for service in reversed(services):
            service.stop()
        shutil.rmtree(beat_schedule.parent, ignore_errors=True)
        raise
    if "beat" in roles:
        services[-1].cleanup_dirs.append(beat_schedule.parent)
    else:
        shutil.rmtree(beat_schedule.parent, ignore_errors=True)
    return services


@contextlib.contextmanager
def private_services(
    *, postgres: bool, redis: bool, redis_data_dir: Path | None = None, started: list[Service] | None = None
) -> Iterator[dict[str, str]]:
    """Start the requested private servers and yield the env variables that point at them.
    ``redis_data_dir``: Redis persists there (AOF). ``started`` receives the servers (to supervise them)."""
    started = [] if started is None else started
    env: dict[str, str] = {}
    try:
        if redis:
            started.append(start_redis(data_dir=redis_data_dir))
            env["PIVRA_REDIS_URL"] = started[-1].url
            log(f"private Redis at {started[-1].url}")
        if postgres:
            started.append(start_postgres())
            env["PIVRA_DATABASE_URL"] = started[-1].url
            log(f"private PostgreSQL at {started[-1].url}")
        yield env
    finally:
        for service in reversed(started):
            service.stop()


# --- commands --------------------------------------------------------------------------------


def _forward_signals_as_keyboard_interrupt() -> None:
    def handler(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    # Installed explicitly: a shell starts background jobs with SIGINT ignored, and Python keeps that.
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _seed_command(args: argparse.Namespace, env: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """``seed_demo``'s command line: demo data on an empty database only, unless ``--demo`` /
    ``PIVRA_DEMO`` asks for it on every start. A fixed password is refused for an https site; it
    reaches the command in its environment (PIVRA_DEMO_PASSWORD), never in its visible argv."""
    try:
        demo = args.demo or env_bool("PIVRA_DEMO", False, environ=env)
    except ImproperlyConfigured as exc:
        raise StackError(f"configuration error: {exc}") from None
    argv = [PYTHON, "manage.py", "seed_demo"]
    env = {k: v for k, v in env.items() if k != "PIVRA_DEMO_PASSWORD"}
    if args.password:
        if (env.get("PIVRA_PUBLIC_URL") or "").strip().startswith("https://"):
            raise StackError(
                "a fixed demo password (PIVRA_DEMO_PASSWORD / --password) is refused when PIVRA_PUBLIC_URL is "
                "https; unset it and the demo logins get random passwords, printed once"
            )
        env["PIVRA_DEMO_PASSWORD"] = args.password
    return (argv if demo else [*argv, "--if-empty"]), env


# chatbots.demo.DEMO_PASSWORD_CHECK_TAG (not imported: this launcher does not set Django up).
DEMO_PASSWORD_CHECK_TAG = "pivra_demo_password"


def refuse_known_demo_password(*, env: dict[str, str]) -> None:
    """Raise StackError when ``check`` reports pivra.E010: an https site whose demo login still has
    the published demo password (an install upgraded from the old seed). The message says how to fix it."""
    argv = [PYTHON, "manage.py", "check", "--deploy", "--tag", DEMO_PASSWORD_CHECK_TAG, "--fail-level", "ERROR"]
    checked = subprocess.run(argv, cwd=ROOT, env=env, capture_output=True, text=True)
    if checked.returncode == 0:
        return
    found = [line.split("(pivra.E010)", 1)[1].strip() for line in checked.stderr.splitlines() if "(pivra.E010)" in line]
    raise StackError(f"refusing to start: {found[0]}" if found else f"manage.py check failed: {checked.stderr.strip()}")


def served_public_url(*, host: str, port: int, env: dict[str, str]) -> str | None:
    """Where the run command serves, as PIVRA_PUBLIC_URL when none is set: the printed links, the
    embed snippet and the demo chatbot's allowed site then name the port actually served (not the
    default 8000). None when the URL is set, or the host is a wildcard no browser can open."""
    if env_is_set("PIVRA_PUBLIC_URL", environ=env) or host in ("0.0.0.0", "::", ""):
        return None
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def redis_data_dir(*, env: dict[str, str]) -> Path:
    """Where the run command's private Redis keeps its AOF: ``<PIVRA_DATA_DIR or var/>/redis``, the
    data directory of the SQLite database and the secret key (pivra/settings.py DATA_DIR)."""
    data_dir = Path(env["PIVRA_DATA_DIR"]) if env_is_set("PIVRA_DATA_DIR", environ=env) else ROOT / "var"
    return data_dir.resolve() / "redis"


def command_run(args: argparse.Namespace) -> int:
    """Bring up the demo stack and supervise it until Ctrl-C: a child that exits is restarted with
    backoff (pivra/supervisor.py), the others keep running."""
    _forward_signals_as_keyboard_interrupt()
    env = dict(os.environ)
    served_at = served_public_url(host=args.host, port=args.port, env=env)
    if served_at is not None:
        env["PIVRA_PUBLIC_URL"] = served_at
    seed_argv, seed_env = _seed_command(args, env)
    web_processes = web_process_count(env=env)  # a bad value stops here, before anything starts
    servers: list[Service] = []
    # An empty PIVRA_REDIS_URL= (as in .env.example) is unset: the private server is started.
    with private_services(
        postgres=False,
        redis=not env_is_set("PIVRA_REDIS_URL", environ=env),
        redis_data_dir=redis_data_dir(env=env),
        started=servers,
    ) as extra:
        env.update(extra)
        manage("migrate", "--noinput", env=env)
        refuse_known_demo_password(env=env)
        manage("collectstatic", "--noinput", "--verbosity", "0", env=env)
        # Captured, not inherited: a password it just created is printed once, after the banners.
        seeded = subprocess.run(seed_argv, cwd=ROOT, env={**seed_env, **extra}, capture_output=True, text=True)
        if seeded.returncode != 0:
            raise StackError(f"manage.py seed_demo failed: {seeded.stderr.strip().removeprefix('CommandError: ')}")
        app = start_app(env=env, host=args.host, port=args.port, web_processes=web_processes)
        time.sleep(2)  # let the worker's and beat's start-up banners pass, so the logins print last
        print(seeded.stdout.rstrip(), flush=True)
        log(f"serving on http://{args.host}:{args.port} (Ctrl-C stops every process)")
        try:
            Supervisor(app=app, servers=servers).run()
        except KeyboardInterrupt:
            log("stopping")
            return 0
        finally:
            app.stop()
    return 0


def _gate(name: str, argv: Sequence[str], env: dict[str, str]) -> bool:
    log(f"── {name}: {' '.join(argv)}")
    ok = subprocess.run(list(argv), cwd=ROOT, env=env).returncode == 0
    log(f"── {name}: {'ok' if ok else 'FAILED'}")
    return ok


def command_test(args: argparse.Namespace) -> int:
    """Quality gates, then the whole pytest suite on private PostgreSQL and Redis; non-zero on any failure."""
    _forward_signals_as_keyboard_interrupt()
    # gettext: the catalogue tests run makemessages and msgfmt (the run command needs neither: the
    # compiled catalogues are committed).
    ensure_system_programs(["chromium", "xgettext", "msgfmt"])
    env = dict(os.environ)
    if not env_is_set("PIVRA_DATA_DIR", environ=env):
        env["PIVRA_DATA_DIR"] = tempfile.mkdtemp(prefix="pivra-test-data-")
    if not env_is_set("PIVRA_SECRET_KEY", environ=env):
        env["PIVRA_SECRET_KEY"] = "test-" + "x" * 40
    gates = [
        ("ruff format", [PYTHON, "-m", "ruff", "format", "--check", "."]),
        ("ruff lint", [PYTHON, "-m", "ruff", "check", "."]),
        ("mypy", [PYTHON, "-m", "mypy", "."]),
        ("migrations", [PYTHON, "manage.py", "makemigrations", "--check", "--dry-run"]),
    ]
    failed = [name for name, argv in gates if not args.skip_gates and not _gate(name, argv, env)]
    with private_services(
        postgres=not env_is_set("PIVRA_DATABASE_URL", environ=env), redis=not env_is_set("PIVRA_REDIS_URL", environ=env)
    ) as extra:
        env.update(extra)
        if not _gate("pytest", [PYTHON, "-m", "pytest", *args.pytest_args], env):
            failed.append("pytest")
    if failed:
        log(f"FAILED: {', '.join(failed)}")
        return 1
    log("all checks passed")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pivra.stack")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the demo stack")
    # `or`: an empty variable (PIVRA_PORT=) means unset, as everywhere else.
    run.add_argument("--host", default=os.environ.get("PIVRA_HOST") or "127.0.0.1")
    run.add_argument("--port", type=int, default=int(os.environ.get("PIVRA_PORT") or "8000"))
    run.add_argument(
        "--password",
        default=os.environ.get("PIVRA_DEMO_PASSWORD") or None,
        help="password of demo users created now (default: a random one each, printed once)",
    )
    run.add_argument(
        "--demo", action="store_true", help="load the demo data even into a database that has data (PIVRA_DEMO=1)"
    )
    test = sub.add_parser("test", help="run the quality gates and the test suite")
    test.add_argument("--skip-gates", action="store_true", help="only run pytest")
    test.add_argument("pytest_args", nargs=argparse.REMAINDER, help="passed to pytest")
    args, unknown = parser.parse_known_args(argv)
    if args.command == "test":
        args.pytest_args = [*unknown, *args.pytest_args]
    elif unknown:
        parser.error(f"unrecognized arguments: {' '.join(unknown)}")
    if not (ROOT / "manage.py").is_file():  # an installed copy (`pip install .`): no checkout to run or test
        log('error: this launcher runs from a checkout; an installed copy runs each role itself (README "Deploying")')
        return 1
    try:
        return command_run(args) if args.command == "run" else command_test(args)
    except StackError as exc:
        log(f"error: {exc}")
        return 1
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":
    sys.exit(main())
