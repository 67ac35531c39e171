"""PostgreSQL killed under a console-socket command, on the real stack: its own PostgreSQL (killed with
SIGKILL, then started again on its data directory and port), its own Redis and its own web process —
the session's servers are never touched.

While PostgreSQL is gone: the reply in flight when it dies (it waits for the conversation's lock, so the
kill lands mid-command), and a reply sent while it is down, are answered ``unavailable`` with their
client ids — never ``server_error`` — and the console API's reply answers 503 ``{code, detail}``, never
a 500. Once it is back, the same commands sent again with the same client ids are each stored once and
reach the visitor's widget socket exactly once; the reply acknowledged before the kill is kept.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Awaitable, Callable, Coroutine, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import httpx
import psycopg
import pytest

from bench.consoleclient import ConsoleSocket, console_connect
from bench.httpclient import Agent, HttpConnection
from bench.wsclient import WebSocket, ws_connect
from pivra.servers import Service, free_port, start_postgres, start_redis
from pivra.stack import AppProcesses, manage, start_app
from pivra.supervisor import respawn_in_place
from tests.e2e.conftest import ARTIFACTS

PASSWORD = "pg-outage-1"
HOST = "127.0.0.1"
T = TypeVar("T")


@dataclass
class Stack:
    pg: Service
    app: AppProcesses
    port: int

    @property
    def origin(self) -> str:
        return f"http://{HOST}:{self.port}"

    def sql(self, query: str, *params: Any) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.pg.url, autocommit=True, connect_timeout=5) as conn:
            return conn.execute(query, params).fetchall()


@pytest.fixture
def stack() -> Iterator[Stack]:
    """Its own PostgreSQL (migrated, demo-seeded) and Redis, and one web process on them."""
    pg = start_postgres(port=free_port())
    redis = start_redis(port=free_port())
    app: AppProcesses | None = None
    try:
        # Every commit durable before it is acknowledged, as in production (the test cluster runs with
        # synchronous_commit off, which a SIGKILL could cost a commit acknowledged just before it).
        with psycopg.connect(pg.url, autocommit=True) as conn:
            conn.execute("ALTER ROLE postgres SET synchronous_commit = on")
        port = free_port()
        env = {
            **os.environ,
            "PIVRA_DATABASE_URL": pg.url,
            "PIVRA_REDIS_URL": redis.url,
            "PIVRA_PUBLIC_URL": f"http://{HOST}:{port}",
            "PIVRA_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PIVRA_DB_POOL_MAX": "8",
            "PIVRA_DEMO_PASSWORD": PASSWORD,
        }
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        manage("migrate", "--noinput", "-v", "0", env=env)
        manage("seed_demo", env=env)
        with psycopg.connect(pg.url, autocommit=True) as conn:  # the classic flow: a request waits for an agent
            conn.execute("UPDATE chatbots_chatbot SET handoff_skip_wait_when_offline = false")
        logs = ARTIFACTS / "logs" / "postgres-outage"
        logs.mkdir(parents=True, exist_ok=True)
        for old in logs.glob("*.log"):
            old.unlink()
        app = start_app(env=env, port=port, log_dir=logs, web_processes=1, roles=("web",))
        yield Stack(pg=pg, app=app, port=port)
    finally:
        if app is not None:
            app.stop()
        redis.stop()
        pg.stop()


@dataclass
class WidgetReader:
    """The visitor's widget socket, as the widget keeps it: reconnects, says hello with the highest
    contiguous seq it holds, and keeps every event frame it is sent (duplicates included)."""

    stack: Stack
    token: str
    conversation: str
    frames: list[dict[str, Any]] = field(default_factory=list)
    stopping: asyncio.Event = field(default_factory=asyncio.Event)

    def contiguous(self) -> int:
        held, n = {frame["seq"] for frame in self.frames}, 0
        while n + 1 in held:
            n += 1
        return n

    def seqs_of(self, client_id: str) -> list[int]:
        return [frame["seq"] for frame in self.frames if frame.get("client_id") == client_id]

    def _on_frame(self, ws: WebSocket, frame: dict[str, Any], received: float) -> None:
        if frame.get("type") == "event" and frame.get("conversation") == self.conversation:
            self.frames.append(frame)

    async def run(self) -> None:
        while not self.stopping.is_set():
            try:
                ws = await ws_connect(
                    HOST, self.stack.port, "/ws/widget/", origin=self.stack.origin, on_frame=self._on_frame
                )
                hello = {"type": "hello", "token": self.token, "conversation": self.conversation}
                ws.send_json({**hello, "last_seq": self.contiguous()})
                stop: asyncio.Future[Any] = asyncio.ensure_future(self.stopping.wait())
                closed: asyncio.Future[Any] = ws.closed
                await asyncio.wait({closed, stop}, return_when=asyncio.FIRST_COMPLETED)
                stop.cancel()
                ws.abort()
            except Exception:
                pass  # refused while PostgreSQL is away: try again, as the widget does
            await asyncio.sleep(0.5)


def _reply(conversation: str, client_id: str) -> dict[str, Any]:
    return {"type": "reply", "conversation_id": conversation, "text": f"answer {client_id}", "client_id": client_id}


async def _until(make: Callable[[], Awaitable[T]], done: Callable[[T], bool], what: str, seconds: float = 120) -> T:
    give_up = time.monotonic() + seconds
    while True:
        result = await make()
        if done(result):
            return result
        if time.monotonic() > give_up:
            raise AssertionError(f"not within {seconds:g} s: {what} (last: {result!r})")
        await asyncio.sleep(1)


async def _scenario(stack: Stack) -> None:
    agent = Agent("alice")
    login = HttpConnection(HOST, stack.port)
    await agent.login(login, PASSWORD)
    login.close()
    console = await console_connect(HOST, stack.port, agent)  # open first: the agent is online
    api = httpx.AsyncClient(
        base_url=stack.origin, timeout=60, cookies=agent.cookies, headers={"X-CSRFToken": agent.cookies["csrftoken"]}
    )
    public_key = stack.sql("SELECT public_key FROM chatbots_chatbot")[0][0]
    session = (await api.post("/api/widget/session", json={"public_key": public_key})).json()
    token, conversation = session["token"], session["state"]["conversation"]
    asked = await api.post("/api/widget/handoff", json={"client_id": "h"}, headers={"Authorization": f"Bearer {token}"})
    assert asked.status_code == 200, asked.text
    widget = WidgetReader(stack, token, conversation)
    reading = asyncio.create_task(widget.run())

    claimed = await console.claim(conversation, "c-1")
    assert claimed["type"] == "ack", claimed
    before = await console.command(_reply(conversation, "r-before"))
    assert before["type"] == "ack", before

    # The reply in flight when PostgreSQL dies: it has passed the session check and waits for the
    # conversation's lock, which another connection holds.
    holder = psycopg.connect(stack.pg.url, connect_timeout=5)
    holder.execute("SELECT 1 FROM conversations_conversation WHERE public_id = %s::uuid FOR UPDATE", [conversation])
    console.answer_timeout = 60.0
    in_flight = asyncio.ensure_future(console.command(_reply(conversation, "r-mid")))
    await _until(
        lambda: asyncio.to_thread(stack.sql, "SELECT count(*) FROM pg_locks WHERE NOT granted"),
        lambda rows: rows[0][0] >= 1,
        "the reply waits for the conversation's lock",
        seconds=30,
    )
    os.killpg(stack.pg.process.pid, signal.SIGKILL)
    stack.pg.process.wait(10)
    holder.close()
    mid = await in_flight
    assert (mid["type"], mid["code"], mid["client_id"]) == ("error", "unavailable", "r-mid"), mid

    # Sent while it is down: over the socket, over HTTP (the page's fallback), and a console page.
    down, http, page = await asyncio.gather(
        console.command(_reply(conversation, "r-down")),
        api.post(f"/api/console/handoffs/{conversation}/reply", json={"client_id": "r-http", "text": "answer r-http"}),
        api.get(f"/dashboard/conversations/{conversation}/", headers={"Accept": "text/html"}),
    )
    assert (page.status_code, "Pivra is reconnecting" in page.text) == (503, True), page.text[:500]
    assert (down["type"], down["code"], down["client_id"]) == ("error", "unavailable", "r-down"), down
    assert http.status_code == 503, http.text
    assert http.json() == {"code": "unavailable", "detail": http.json()["detail"]} and http.json()["detail"]
    assert http.headers["Retry-After"]

    await asyncio.to_thread(respawn_in_place, stack.pg)  # same port, same data directory
    sockets: list[ConsoleSocket] = [console]

    async def resend(client_id: str) -> dict[str, Any]:
        """As the page does: the same command, same client id, until it is answered (a 4503 close
        while the session could not be checked means: connect again, then send it again)."""
        if not sockets[-1].is_open:
            try:
                sockets.append(await console_connect(HOST, stack.port, agent, connect_timeout=10))
            except Exception as exc:
                return {"type": "error", "code": f"reconnect failed: {exc}"}
        try:
            return await sockets[-1].command(_reply(conversation, client_id))
        except ConnectionError as exc:
            return {"type": "error", "code": f"closed: {exc}"}

    def resender(client_id: str) -> Callable[[], Awaitable[dict[str, Any]]]:
        return lambda: resend(client_id)

    acked: dict[str, dict[str, Any]] = {}
    for client_id in ("r-mid", "r-down"):
        acked[client_id] = await _until(resender(client_id), lambda a: a["type"] == "ack", f"{client_id} acked")
        assert acked[client_id]["duplicate"] is False, acked[client_id]  # not stored while PostgreSQL was down
    again = await resend("r-mid")
    assert (again["type"], again["duplicate"], again["seq"]) == ("ack", True, acked["r-mid"]["seq"])
    http_again = await _until(
        lambda: api.post(
            f"/api/console/handoffs/{conversation}/reply", json={"client_id": "r-http", "text": "answer r-http"}
        ),
        lambda response: response.status_code != 503,
        "the HTTP reply accepted",
    )
    assert http_again.status_code == 201, http_again.text

    client_ids = ("r-before", "r-mid", "r-down", "r-http")
    await _until(
        lambda: asyncio.sleep(0, result=[widget.seqs_of(c) for c in client_ids]),
        lambda seqs: all(seqs),
        "every reply reached the widget",
        seconds=60,
    )
    await asyncio.sleep(2)  # a second copy would show up now
    widget.stopping.set()
    await reading
    await api.aclose()
    for socket in sockets:
        socket.abort()

    stored = dict(
        stack.sql(
            "SELECT client_id, count(*) FROM conversations_event e JOIN conversations_conversation c"
            " ON c.id = e.conversation_id WHERE c.public_id = %s::uuid AND client_id = ANY(%s) GROUP BY client_id",
            conversation,
            list(client_ids),
        )
    )
    assert stored == dict.fromkeys(client_ids, 1), stored  # nothing lost, nothing stored twice
    for client_id in client_ids:
        assert len(widget.seqs_of(client_id)) == 1, (client_id, widget.frames)  # shown once
    assert widget.seqs_of("r-mid") == [acked["r-mid"]["seq"]]


def _in_own_thread(coroutine: Callable[[], Coroutine[Any, Any, None]]) -> None:
    """Run on a fresh event loop in a thread of its own: Playwright's sync API may hold this thread's."""
    failure: list[BaseException] = []

    def run() -> None:
        try:
            asyncio.run(coroutine())
        except BaseException as exc:
            failure.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    thread.join()
    if failure:
        raise failure[0]


@pytest.mark.timeout(400)
def test_a_postgres_outage_answers_unavailable_and_the_resent_commands_land_exactly_once(stack: Stack) -> None:
    _in_own_thread(lambda: _scenario(stack))
    log = Path(stack.app.web_services()[0].log_file or "")
    text = log.read_text() if log.is_file() else ""
    assert "console reply failed" not in text  # no command ended as a server error
