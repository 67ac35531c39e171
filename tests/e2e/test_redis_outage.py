"""Redis killed for 5 s during traffic, on the real stack (its own Redis with AOF, its own app
processes, supervised): answers are 503 while it is down and never 500, no process exits, and once
it is back every stored event reaches its visitor's stream (client seq sets equal the database's),
and the message sent just before the kill gets exactly one AI reply."""

from __future__ import annotations

import json
import os
import re
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import Any

import httpx
import pytest
from django.db import connection

from chatbots.models import Chatbot
from conversations.models import Event
from pivra.stack import AppProcesses, free_port, start_app, start_redis
from pivra.supervisor import Supervisor, respawn_in_place
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.widget_helpers import DEMO_PASSWORD, _Served, seed_demo

OUTAGE_SECONDS = 5
VISITORS = 4


class DripLLM(_Served):
    """An OpenAI-compatible endpoint that takes ~1 s per answer: AI tasks are in flight (unacknowledged)
    when Redis dies, which is what used to kill the worker."""

    def __init__(self) -> None:
        super().__init__(_DripHandler)

    @property
    def url(self) -> str:
        return f"{self.origin}/v1"


class _DripHandler(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for word in ("Happy ", "to ", "help ", "with ", "that."):
            self.wfile.write(f"data: {json.dumps({'choices': [{'delta': {'content': word}}]})}\n\n".encode())
            self.wfile.flush()
            time.sleep(0.2)
        self.wfile.write(b"data: [DONE]\n\n")


@dataclass
class Outage:
    started: float = float("inf")
    ended: float = float("inf")

    def covers(self, begin: float, end: float) -> bool:
        return self.started <= begin and end <= self.ended


@dataclass
class Answers:
    """Every HTTP answer: (path, status, sent at, answered at)."""

    seen: list[tuple[str, int, float, float]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def call(self, client: httpx.Client, method: str, path: str, **kwargs: Any) -> httpx.Response | None:
        begin = time.monotonic()
        try:
            response = client.request(method, path, **kwargs)
        except httpx.HTTPError:
            return None  # daphne itself never stops here; a timeout is retried like a 503
        with self.lock:
            self.seen.append((path, response.status_code, begin, time.monotonic()))
        return response


class StreamReader(threading.Thread):
    """A visitor's SSE stream, as the widget reads it: reconnects with ``Last-Event-ID`` = the highest
    contiguous seq it holds, and shows each seq once."""

    def __init__(self, base: str, token: str, conversation: str) -> None:
        super().__init__(daemon=True)
        self.base, self.token, self.conversation = base, token, conversation
        self.received: list[list[int]] = []  # event seqs, per connection
        self.stop = threading.Event()

    def seqs(self) -> set[int]:
        return {seq for frames in list(self.received) for seq in list(frames)}

    def contiguous(self) -> int:
        held, n = self.seqs(), 0
        while n + 1 in held:
            n += 1
        return n

    def run(self) -> None:
        while not self.stop.is_set():
            headers = {"Authorization": f"Bearer {self.token}", "Last-Event-ID": str(self.contiguous())}
            try:
                with httpx.stream(
                    "GET",
                    f"{self.base}/api/widget/stream",
                    params={"conversation": self.conversation},
                    headers=headers,
                    timeout=httpx.Timeout(5, read=20),
                ) as response:
                    if response.status_code != 200:
                        time.sleep(0.5)
                        continue
                    frames: list[int] = []
                    self.received.append(frames)
                    name, data = "message", ""
                    for line in response.iter_lines():
                        if self.stop.is_set():
                            return
                        if line == "":
                            if name == "event" and data:
                                frames.append(json.loads(data)["seq"])
                            name, data = "message", ""
                        elif line.startswith("event: "):
                            name = line[7:]
                        elif line.startswith("data: "):
                            data += line[6:]
            except httpx.HTTPError:
                pass
            time.sleep(0.3)


class Visitor(threading.Thread):
    """Sends a message every ~0.7 s; a refused one (503) is kept and sent again with the same
    client_id, as the widget keeps the typed text."""

    def __init__(self, base: str, public_key: str, answers: Answers, name: str) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=base, timeout=10)
        session = self.client.post("/api/widget/session", json={"public_key": public_key}).json()
        self.token, self.conversation = session["token"], session["state"]["conversation"]
        self.client.headers["Authorization"] = f"Bearer {self.token}"
        self.reader = StreamReader(base, self.token, self.conversation)
        self.answers, self.name = answers, name
        self.sending = threading.Event()
        self.sent = 0
        self.pending: str | None = None

    def send_one(self) -> bool:
        if self.pending is None:
            self.sent += 1
            self.pending = f"{self.name}-{self.sent}"
        body = {"client_id": self.pending, "text": f"question {self.sent} from {self.name}"}
        response = self.answers.call(self.client, "POST", "/api/widget/messages", json=body)
        if response is not None and response.status_code == 200:
            self.pending = None
            return True
        return False

    def run(self) -> None:
        while self.sending.is_set() or self.pending is not None:
            self.send_one()
            time.sleep(0.7)


class Agent(threading.Thread):
    """An agent in the console API (session cookie + CSRF), replying every ~1 s to one conversation."""

    def __init__(self, base: str, answers: Answers, conversation: str) -> None:
        super().__init__(daemon=True)
        self.client = httpx.Client(base_url=base, timeout=10, follow_redirects=True)
        page = self.client.get("/accounts/login/")
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text)
        assert token, page.text[:300]
        self.client.post(
            "/accounts/login/",
            data={"csrfmiddlewaretoken": token.group(1), "username": "alice", "password": DEMO_PASSWORD},
            headers={"Referer": str(page.url)},
        )
        self.client.headers["X-CSRFToken"] = self.client.cookies["csrftoken"]
        self.answers, self.conversation = answers, conversation
        claimed = self.client.post(f"/api/console/handoffs/{conversation}/claim")
        assert claimed.status_code == 200, claimed.text
        self.sending = threading.Event()
        self.sent = 0
        self.pending: str | None = None

    def run(self) -> None:
        while self.sending.is_set() or self.pending is not None:
            if self.pending is None:
                self.sent += 1
                self.pending = f"agent-{self.sent}"
            response = self.answers.call(
                self.client,
                "POST",
                f"/api/console/handoffs/{self.conversation}/reply",
                json={"client_id": self.pending, "text": f"agent answer {self.sent}"},
            )
            if response is not None and response.status_code == 201:
                self.pending = None
            time.sleep(1.0)


def _database_url() -> str:
    db = connection.settings_dict
    return f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"


@pytest.fixture
def own_stack(tmp_path: Path, transactional_db: None) -> Iterator[tuple[AppProcesses, Any, Supervisor, list[str]]]:
    """Its own Redis (fixed port, AOF) and its own app processes on the test database, supervised in
    a background thread: the session's Redis and live_stack are never touched."""
    if connection.vendor != "postgresql":
        pytest.skip("the real stack runs on PostgreSQL")
    redis = start_redis(port=free_port(), data_dir=tmp_path / "redis")
    port = free_port()
    logs = ARTIFACTS / "logs" / "redis-outage"
    logs.mkdir(parents=True, exist_ok=True)
    for old in logs.glob("*.log"):
        old.unlink()
    env = {
        **os.environ,
        "PIVRA_DATABASE_URL": _database_url(),
        "PIVRA_REDIS_URL": redis.url,
        "PIVRA_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PIVRA_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PIVRA_WEBHOOK_ALLOW_PRIVATE": "true",
        "PIVRA_DB_POOL_MAX": "8",
        "PIVRA_RATE_VISITOR_PER_MINUTE": "1000",
        "PIVRA_AI_UNANSWERED_GRACE_SECONDS": "5",
        # The AI reply lock's lease (deadline + 30 s) outlives the restart in the AOF: keep it short,
        # so the sweep answers a reply lost in the outage within the test's wait.
        "PIVRA_LLM_DEADLINE": "10",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    app = start_app(env=env, port=port, log_dir=logs, worker_concurrency=4, delivery_concurrency=2)
    lines: list[str] = []
    supervisor = Supervisor(app=app, say=lines.append)
    stop = threading.Event()
    thread = threading.Thread(target=supervisor.run, kwargs={"stop": stop, "interval": 0.25}, daemon=True)
    thread.start()
    try:
        yield app, redis, supervisor, lines
    finally:
        stop.set()
        thread.join(30)
        app.stop()
        redis.stop()


def _wait_for(condition: Any, what: str, seconds: float = 90) -> None:
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        if condition():
            return
        time.sleep(0.5)
    raise AssertionError(f"not within {seconds:g} s: {what}")


def _stored(conversation: str) -> set[int]:
    return set(Event.objects.filter(conversation__public_id=conversation).values_list("seq", flat=True))


def _latest_answered(conversation: str) -> bool:
    latest = (
        Event.objects.filter(conversation__public_id=conversation, author=Event.Author.VISITOR, kind="message")
        .order_by("-seq")
        .first()
    )
    assert latest is not None
    return Event.objects.filter(
        conversation__public_id=conversation, author=Event.Author.AI, data__reply_to=latest.seq
    ).exists()


@pytest.mark.timeout(300)
def test_a_redis_outage_answers_503_restarts_nothing_and_loses_no_event(
    own_stack: tuple[AppProcesses, Any, Supervisor, list[str]],
) -> None:
    app, redis, _supervisor, supervisor_log = own_stack
    base = app.http_url
    bot = seed_demo()
    answers, outage = Answers(), Outage()
    pids = {service.name: service.process.pid for service in app.services}
    with DripLLM() as llm:
        Chatbot.objects.filter(pk=bot.pk).update(
            ai_provider=Chatbot.Provider.OPENAI, llm_base_url=llm.url, llm_api_key="sk-e2e", llm_model="e2e-model"
        )
        visitors = [Visitor(base, bot.public_key, answers, f"v{n}") for n in range(VISITORS)]
        # The first visitor talks to a live agent (replies through the console API); the others to the AI.
        handoff = visitors[0].client.post("/api/widget/handoff", json={"client_id": "h"})
        assert handoff.status_code == 200, handoff.text
        agent = Agent(base, answers, visitors[0].conversation)
        last = Visitor(base, bot.public_key, answers, "last")  # sends once, just before the kill
        people: list[Visitor | Agent] = [*visitors, agent]
        for person in people:
            person.sending.set()
        for thread in [*visitors, agent, *(v.reader for v in [*visitors, last])]:
            thread.start()
        time.sleep(4)

        assert last.send_one()
        last_seq = max(_stored(last.conversation))
        time.sleep(0.3)  # its AI reply is being streamed (unacknowledged) when Redis dies
        os.killpg(redis.process.pid, signal.SIGKILL)
        redis.process.wait(10)
        # The window is when Redis was surely down: from its death until its restart begins (it
        # listens before respawn_in_place returns, so a request ending then may rightly succeed).
        outage.started = time.monotonic()
        time.sleep(OUTAGE_SECONDS)
        outage.ended = time.monotonic()
        respawn_in_place(redis)  # same port, same AOF directory
        time.sleep(6)  # traffic goes on after Redis is back

        for person in people:
            person.sending.clear()
        for person in people:
            person.join(60)
            assert not person.is_alive(), "a refused message was never accepted after Redis came back"

        readers = [v.reader for v in [*visitors, last]]
        _wait_for(
            lambda: all(r.seqs() == _stored(r.conversation) for r in readers),
            "every stored event reached its visitor's stream",
        )
        _wait_for(
            lambda: Event.objects.filter(
                conversation__public_id=last.conversation, author=Event.Author.AI, data__reply_to=last_seq
            ).exists(),
            "the message sent just before the kill got its AI reply",
        )
        # The workers consume again after the reconnect: each AI conversation's latest message, sent
        # after Redis came back, is answered (by its own task, on the AI worker).
        _wait_for(
            lambda: all(_latest_answered(v.conversation) for v in visitors[1:]),
            "the messages sent after Redis came back got their AI replies",
        )
        time.sleep(2)  # a second copy of that reply would show up now
        # Whatever was stored meanwhile (an AI reply finishing now) reaches its stream too.
        _wait_for(
            lambda: all(r.seqs() == _stored(r.conversation) for r in readers),
            "every event stored since reached its visitor's stream",
        )
        for reader in readers:
            reader.stop.set()

    # Each visitor's screen holds exactly the stored events: none lost. (The widget renders a seq once,
    # keyed by seq, so a replayed frame that overlaps a live push right after a reconnect is not shown twice.)
    for reader in readers:
        assert reader.seqs() == _stored(reader.conversation), reader.conversation
    assert (
        Event.objects.filter(
            conversation__public_id=last.conversation, author=Event.Author.AI, data__reply_to=last_seq
        ).count()
        == 1
    )
    # Never a 500: every failed answer is 503, and a request made entirely inside the outage is refused so.
    assert {status for _, status, _, _ in answers.seen if status >= 500} <= {503}, answers.seen
    during = [(path, status) for path, status, begin, end in answers.seen if outage.covers(begin, end)]
    assert during, "no request was made while Redis was down"
    # The widget's send needs Redis (its rate limit): refused. An agent's reply is a database write
    # whose push fails: it may be stored (2xx) and reaches the visitor once Redis is back (above).
    assert {status for path, status in during if path.startswith("/api/widget/")} == {503}, during
    assert all(status == 503 or status < 300 for _, status in during), during
    # No process exited: the supervisor restarted nothing and every pid is the one started.
    assert supervisor_log == []
    assert {service.name: service.process.pid for service in app.services} == pids
    assert all(service.process.poll() is None for service in app.services)
