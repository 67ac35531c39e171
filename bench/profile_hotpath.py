"""``python -m bench.profile_hotpath``: where daphne's CPU goes on the hot paths, per operation.

Starts the real stack (one daphne, as the bench does), opens ``--conversations`` widget conversations
each claimed by an agent, then, for each ``--mode``:

- ``http``: agents reply through the console API (``POST …/reply``), open loop at ``--rate``/s;
- ``socket``: agents reply over their console socket (``{"type": "reply", …}``), same schedule;
- ``visitor``: visitors send messages over their widget socket (in a handoff: the pipeline silences the AI);
- ``claims``: the claim storm (``--claimers`` agents claim one fresh handoff at once, over HTTP and over the socket).

It needs only ``pivra.stack`` and the bench's raw HTTP/WebSocket clients, so it also runs in an
older tree (``git archive`` of a commit, with this file, ``bench/consoleclient.py``,
``bench/loadbase.py`` and ``bench/cpu.py`` copied in) for "before" figures.

Each open-loop run is ``--duration`` seconds; it runs ``--repeat`` times measured by daphne's CPU
seconds from ``/proc/<pid>/stat`` (CPU ms per operation), then once more under ``py-spy record``
(raw collapsed stacks in ``--out``), which ``--analyze`` turns into the "where the CPU goes" table.

    python -m bench.profile_hotpath --modes http,socket --rate 50 --duration 20
    python -m bench.profile_hotpath --analyze bench/results/profile-http.txt
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import multiprocessing
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import traceback
from collections import Counter
from dataclasses import dataclass
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

from bench.consoleclient import ConsoleSocket, console_connect
from bench.cpu import group_cpu, process_cpu
from bench.httpclient import Agent, HttpError
from bench.loadbase import Client
from bench.seeding import seed_waiting_flow
from bench.stats import summary_ms
from bench.wsclient import WebSocket, ws_connect

ROOT = Path(__file__).resolve().parent.parent
PASSWORD = "profile-pass-2718"
TEXT = "Thanks for waiting — here is what I found about your order, it ships tomorrow."


# --- the load process (no Django) -----------------------------------------------------------------


@dataclass
class Chat:
    token: str
    conversation: str
    agent: Agent
    ws: WebSocket | None = None


class HotpathLoad(Client):
    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__(config)
        self.chats: list[Chat] = []
        self.consoles: dict[str, ConsoleSocket] = {}
        self.expected: dict[str, float] = {}  # client id -> intended send time
        self.delivered: dict[str, float] = {}  # client id -> latency
        self.duplicates = 0

    def _on_widget_frame(self, ws: WebSocket, frame: dict[str, Any], received: float) -> None:
        client_id = frame.get("client_id")
        if frame.get("type") != "event" or frame.get("author") != "agent" or client_id not in self.expected:
            return
        if client_id in self.delivered:
            self.duplicates += 1
        else:
            self.delivered[client_id] = received - self.expected[client_id]

    async def _widget(self, on_frame: Any) -> tuple[str, str, WebSocket]:
        """A new visitor's session and socket, escalated: (token, conversation, socket)."""
        reply = await self.pool.request(
            "POST", "/api/widget/session", json_body={"public_key": self.public_key, "token": None, "page": None}
        )
        data = reply.json()
        ws = await ws_connect(self.host, self.port, "/ws/widget/", origin=self.origin, on_frame=on_frame)
        welcome = ws.expect(lambda f: f.get("type") in ("welcome", "error"))
        hello = {"type": "hello", "token": data["token"], "conversation": data["state"]["conversation"], "last_seq": 0}
        ws.send_json(hello)
        conversation = (await asyncio.wait_for(welcome, 30))["state"]["conversation"]
        ack = ws.expect(lambda f: f.get("client_id") == "ask" and f.get("type") in ("ack", "error"))
        ws.send_json({"type": "handoff.request", "client_id": "ask"})
        if (await asyncio.wait_for(ack, 30))["type"] != "ack":
            raise HttpError("handoff request refused")
        return data["token"], conversation, ws

    async def cmd_chats(self, count: int, agents: int) -> int:
        """``count`` live chats: a widget socket each, escalated and claimed (round robin) over HTTP."""
        for index in range(count):
            token, conversation, ws = await self._widget(self._on_widget_frame)
            agent = self.agents[index % agents]
            claimed = await self.pool.request(
                "POST", f"/api/console/handoffs/{conversation}/claim", headers=agent.headers()
            )
            if claimed.status != 200:
                raise HttpError(f"claim: HTTP {claimed.status}")
            self.chats.append(Chat(token, conversation, agent, ws))
        return len(self.chats)

    async def _console(self, agent: Agent) -> ConsoleSocket:
        console = self.consoles.get(agent.username)
        if console is None or not console.is_open:
            console = self.consoles[agent.username] = await console_connect(self.host, self.port, agent)
        return console

    async def _op(self, mode: str, chat: Chat, client_id: str) -> bool:
        if mode == "http":
            response = await self.pool.request(
                "POST",
                f"/api/console/handoffs/{chat.conversation}/reply",
                headers=chat.agent.headers(),
                json_body={"client_id": client_id, "text": TEXT},
            )
            return response.status == 201
        if mode == "socket":
            return (await (await self._console(chat.agent)).reply(chat.conversation, TEXT, client_id))["type"] == "ack"
        assert chat.ws is not None  # visitor: a message over the widget socket, timed to its ack
        ack = chat.ws.expect(lambda f: f.get("client_id") == client_id and f.get("type") in ("ack", "error"))
        chat.ws.send_json({"type": "message", "client_id": client_id, "text": TEXT})
        if (await asyncio.wait_for(ack, 30))["type"] != "ack":
            return False
        self.delivered[client_id] = time.monotonic() - self.expected[client_id]
        return True

    async def cmd_open_loop(self, *, mode: str, rate: float, duration: float, tag: str) -> dict[str, Any]:
        """Operations at ``rate`` per second on a fixed schedule that does not wait for answers;
        latency from each one's intended send time to the frame on the other socket (the visitor's
        ``event``; for ``visitor``, its ``ack``)."""
        self.expected.clear()
        self.delivered.clear()
        self.duplicates = 0
        accepted: list[str] = []
        errors: list[str] = []

        async def one(chat: Chat, client_id: str) -> None:
            try:
                if await self._op(mode, chat, client_id):
                    accepted.append(client_id)
                else:
                    errors.append(client_id)
            except Exception as exc:
                errors.append(repr(exc)[:200])

        tasks = []
        start = time.monotonic() + 0.05
        for index in range(max(1, round(rate * duration))):
            intended = start + index / rate
            delay = intended - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            client_id = f"{tag}-{index}"
            self.expected[client_id] = intended
            tasks.append(asyncio.create_task(one(self.chats[index % len(self.chats)], client_id)))
        await asyncio.wait(tasks, timeout=60)
        give_up = time.monotonic() + 10
        while time.monotonic() < give_up and any(c not in self.delivered for c in accepted):  # noqa: ASYNC110
            await asyncio.sleep(0.02)
        await asyncio.sleep(0.2)
        return {
            "accepted": len(accepted),
            "errors": len(errors),
            "error_sample": errors[:3],
            "lost": sum(1 for c in accepted if c not in self.delivered),
            "duplicated": self.duplicates,
            **summary_ms([self.delivered[c] for c in accepted if c in self.delivered]),
        }

    async def cmd_claim_storm(self, *, mode: str, claimers: int, trials: int) -> dict[str, Any]:
        """``claimers`` agents claim one fresh handoff at once (over HTTP or their console sockets)."""
        agents = self.agents[:claimers]
        for agent in agents:
            await self._console(agent)
        one_winner, losers = 0, list[float]()
        for trial in range(trials):
            _, conversation, ws = await self._widget(None)

            async def claim(agent: Agent, client_id: str, conversation: str, fired: float) -> tuple[bool, float]:
                if mode == "http":
                    path = f"/api/console/handoffs/{conversation}/claim"
                    won = (await self.pool.request("POST", path, headers=agent.headers())).status == 200
                else:
                    won = (await (await self._console(agent)).claim(conversation, client_id))["type"] == "ack"
                return won, time.monotonic() - fired

            fired = time.monotonic()
            results = await asyncio.gather(
                *(claim(a, f"c{trial}-{i}", conversation, fired) for i, a in enumerate(agents))
            )
            one_winner += sum(won for won, _ in results) == 1
            losers.extend(t for won, t in results if not won)
            ws.abort()
        return {"mode": mode, "trials": trials, "one_winner": one_winner, "losers": summary_ms(losers)}


async def _serve(conn: Connection, config: dict[str, Any]) -> None:
    loop = asyncio.get_running_loop()
    generator = HotpathLoad(config)
    while True:
        command, params = await loop.run_in_executor(None, conn.recv)
        if command == "stop":
            conn.send(("ok", None))
            break
        try:
            conn.send(("ok", await getattr(generator, f"cmd_{command}")(**params)))
        except Exception as exc:
            conn.send(("error", "".join(traceback.format_exception(exc))))
    generator.pool.close()


def load_main(conn: Connection, config: dict[str, Any]) -> None:
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(_serve(conn, config))


# --- the orchestrator -----------------------------------------------------------------------------


def log(message: str) -> None:
    print(f"profile: {message}", file=sys.stderr, flush=True)


def _py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")
    if not Path(found).exists():
        raise SystemExit("py-spy is not installed (.venv/bin/pip install py-spy)")
    return found


def _seed(env: dict[str, str], agents: int) -> str:
    """The demo workspace on the Business plan with ``agents`` agents; returns the chatbot's key."""
    os.environ.update(env)
    os.environ["DJANGO_SETTINGS_MODULE"] = "pivra.settings"
    import django

    django.setup()
    from django.contrib.auth.models import User

    from chatbots.demo import demo_seed
    from chatbots.models import Membership, Workspace
    from chatbots.services import membership_add, subscription_set

    key = demo_seed(password=PASSWORD).chatbot_key
    seed_waiting_flow(chatbot_key=key)
    workspace = Workspace.objects.get(slug="demo")
    subscription_set(workspace=workspace, plan_code="business")
    for index in range(agents):
        user = User.objects.create_user(f"agent-{index:02d}", f"agent-{index:02d}@example.com", PASSWORD)
        membership_add(workspace=workspace, user=user, role=Membership.Role.AGENT)
    return key


def run(args: argparse.Namespace) -> int:
    from pivra.stack import free_port, manage, start_app, start_postgres, start_redis

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    log_dir = Path(tempfile.mkdtemp(prefix="pivra-profile-logs-"))
    services, app, load = [], None, None
    results: dict[str, Any] = {"rate": args.rate, "duration": args.duration, "conversations": args.conversations}
    try:
        redis, postgres = start_redis(), start_postgres()
        services += [redis, postgres]
        port = free_port()
        base = {k: v for k, v in os.environ.items() if not k.startswith(("PIVRA_", "DJANGO_"))}
        env = {
            **base,
            "PIVRA_DATABASE_URL": postgres.url,
            "PIVRA_REDIS_URL": redis.url,
            "PIVRA_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "PIVRA_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PIVRA_SECRET_KEY": "profile-" + "k" * 40,
            "PIVRA_DATA_DIR": str(log_dir / "data"),
            "PIVRA_LOG_LEVEL": "WARNING",
            "PIVRA_RATE_VISITOR_PER_MINUTE": "100000000",
            "PIVRA_RATE_IP_PER_MINUTE": "100000000",
            **dict(args.set or []),
        }
        manage("migrate", "--noinput", "-v", "0", env=env)
        agents = max(args.claimers, 10)
        key = _seed(env, agents)
        if "web_processes" in inspect.signature(start_app).parameters:  # one daphne: CPU per op is its CPU
            app = start_app(env=env, port=port, log_dir=log_dir, web_processes=1)
        else:  # a tree from before PIVRA_WEB_PROCESSES (the "before" figures) starts one anyway
            app = start_app(env=env, port=port, log_dir=log_dir)
        daphne = (app.web_services()[0] if hasattr(app, "web_services") else app.service("daphne")).process.pid
        log(f"stack up at {app.http_url}, one daphne (pid {daphne}); logs in {log_dir}")
        context = multiprocessing.get_context("spawn")
        parent, child = context.Pipe()
        config = {"host": "127.0.0.1", "port": port, "public_key": key, "password": PASSWORD}
        load = context.Process(target=load_main, args=(child, config), daemon=True)
        load.start()

        def call(command: str, timeout: float = 600, **params: Any) -> Any:
            parent.send((command, params))
            if not parent.poll(timeout):
                raise TimeoutError(command)
            status, result = parent.recv()
            if status != "ok":
                raise RuntimeError(result)
            return result

        call("login", usernames=[f"agent-{i:02d}" for i in range(agents)])
        call("chats", count=args.conversations, agents=10)
        for mode in args.modes.split(","):
            if mode == "claims":
                results["claims"] = {}
                for transport in ("http", "socket"):
                    before = process_cpu(daphne)
                    figure = call("claim_storm", mode=transport, claimers=args.claimers, trials=args.trials)
                    figure["daphne_cpu_s"] = round(process_cpu(daphne) - before, 3)
                    results["claims"][transport] = figure
                    log(f"claims over {transport}: {json.dumps(figure)}")
                continue
            call("open_loop", mode=mode, rate=args.rate, duration=3, tag=f"warm-{mode}")
            runs = []
            for attempt in range(args.repeat + 1):
                profiled = attempt == args.repeat
                spy = None
                if profiled:
                    spy = subprocess.Popen(
                        [_py_spy(), "record", "--format", "raw", "--rate", "250", "--nonblocking", "--gil",
                         "-o", str(out / f"profile-{mode}.txt"), "-p", str(daphne)],
                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                    )  # fmt: skip
                    time.sleep(1.0)
                before, pg_before = process_cpu(daphne), group_cpu(postgres.process.pid)
                figure = call("open_loop", mode=mode, rate=args.rate, duration=args.duration, tag=f"{mode}{attempt}")
                used, pg_used = process_cpu(daphne) - before, group_cpu(postgres.process.pid) - pg_before
                figure["daphne_cpu_ms_per_op"] = round(used * 1000 / max(1, figure["accepted"]), 3)
                figure["postgres_cpu_ms_per_op"] = round(pg_used * 1000 / max(1, figure["accepted"]), 3)
                figure["profiled"] = profiled
                if spy is not None:
                    spy.send_signal(2)
                    spy.wait(30)
                runs.append(figure)
                log(f"{mode} run {attempt}{' (py-spy)' if profiled else ''}: {json.dumps(figure)}")
            results[mode] = runs
    finally:
        if load is not None and load.is_alive():
            with contextlib.suppress(Exception):
                parent.send(("stop", {}))
            load.join(5)
            if load.is_alive():
                load.kill()
        if app is not None:
            app.stop()
        for service in reversed(services):
            service.stop()
    (out / "hotpath.json").write_text(json.dumps(results, indent=2))
    log(f"wrote {out / 'hotpath.json'}")
    for mode in args.modes.split(","):
        path = out / f"profile-{mode}.txt"
        if path.exists():
            measured = [r["daphne_cpu_ms_per_op"] for r in results.get(mode, []) if not r.get("profiled")]
            cpu_ms = sum(measured) / len(measured) if measured else None
            print(f"\n## {mode}: daphne CPU {cpu_ms and round(cpu_ms, 2)} ms per operation\n")
            print(analyze(path, cpu_ms=cpu_ms))
    return 0


# --- the analysis ---------------------------------------------------------------------------------

# (label, pattern on a frame "function (file:line)"). A stack's samples go to the label of its
# innermost frame that matches a rule, so specific work (JSON, SQL) wins over what encloses it.
RULES: list[tuple[str, str]] = [
    ("frame JSON (json/orjson)", r"\((json|orjson)/|json/encoder|json/decoder|\bdumps \(|\bloads \("),
    ("SQL: psycopg execute / fetch", r"\(psycopg/|psycopg_pool"),
    ("commit", r"\bcommit \(django/db|_commit \(django/db"),
    ("publish to Redis (after commit)", r"pivra/realtime\.py"),
    ("channel layer (Redis pub/sub, receive, inbox)", r"channels_redis/|pivra/channel_layer\.py|redis/asyncio"),
    ("session / auth", r"contrib/sessions|contrib/auth|pivra/sessions\.py|pivra/console/session_validity"),
    ("CSRF", r"middleware/csrf"),
    ("ninja parse / validate / render", r"\(ninja/|pydantic"),
    ("service: ORM (query build, model rows)", r"django/db/models|django/db/backends|django/db/transaction"),
    ("service logic (handoff/conversations)", r"handoff/|conversations/|pivra/widget/operations"),
    ("middleware (other)", r"middleware|django/core/handlers|pivra/api_errors|pivra/proxy|whitenoise|axes/"),
    ("sync_to_async thread hop", r"asgiref/"),
    ("socket consumer (widget / console)", r"pivra/widget/consumers|pivra/console/consumers|pivra/sockets|channels/"),
    ("websocket send / HTTP parse (daphne, twisted, autobahn)", r"\((daphne|twisted|autobahn|txaio)/"),
    ("logging", r"logging/"),
    ("asyncio loop", r"asyncio/"),
]


def analyze(path: Path, *, cpu_ms: float | None = None) -> str:
    """The samples of a py-spy raw profile by category (``cpu_ms``: the measured CPU per operation,
    spread over the categories by their share)."""
    compiled = [(label, re.compile(pattern)) for label, pattern in RULES]
    totals: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        frames = stack.split(";")
        label = "other"
        for frame in reversed(frames):
            hit = next((lbl for lbl, rx in compiled if rx.search(frame)), None)
            if hit:
                label = hit
                break
        totals[label] += int(count)
        leaves[frames[-1][:110]] += int(count)
    all_samples = sum(totals.values()) or 1
    lines = ["| where | share | ms per operation |", "|---|---|---|"]
    for label, samples in totals.most_common():
        share = samples / all_samples
        ms = f"{share * cpu_ms:.2f}" if cpu_ms else ""
        lines.append(f"| {label} | {share:.0%} | {ms} |")
    lines.append("\ntop leaf frames:")
    for leaf, samples in leaves.most_common(15):
        lines.append(f"  {samples / all_samples:5.1%}  {leaf}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_hotpath", description=__doc__.split("\n")[0])
    parser.add_argument("--modes", default="http,socket,visitor,claims")
    parser.add_argument("--rate", type=float, default=50)
    parser.add_argument("--duration", type=float, default=20)
    parser.add_argument("--repeat", type=int, default=2, help="measured runs per mode (then one under py-spy)")
    parser.add_argument("--conversations", type=int, default=50)
    parser.add_argument("--claimers", type=int, default=20)
    parser.add_argument("--trials", type=int, default=20)
    parser.add_argument("--out", default=tempfile.mkdtemp(prefix="pivra-profile-"))
    parser.add_argument("--set", action="append", type=lambda s: tuple(s.split("=", 1)), help="extra app env K=V")
    parser.add_argument("--analyze", help="only print the table of a py-spy raw profile")
    parser.add_argument("--cpu-ms", type=float, help="with --analyze: the measured CPU ms per operation")
    args = parser.parse_args(argv)
    if args.analyze:
        print(analyze(Path(args.analyze), cpu_ms=args.cpu_ms))
        return 0
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    return run(args)


if __name__ == "__main__":
    sys.exit(main())
