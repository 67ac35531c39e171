"""One tenant's slow AI never stalls another: the real stack (``pivra.stack.start_app``: daphne, the
main worker, the AI worker, the delivery worker and beat) on the test database and Redis, against
loopback LLM endpoints — one that drips a token a second and never finishes (workspace A), one that
answers at once (workspace B)."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import redis as redis_lib
from django.conf import settings as django_settings
from django.db import connection
from kombu.exceptions import OperationalError

from chatbots.models import Chatbot
from conversations.models import Event
from handoff.models import Handoff
from pivra.stack import AppProcesses, free_port, start_app
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, say
from tests.stack_waits import wait_showing_logs

pytestmark = pytest.mark.django_db(transaction=True)

DEADLINE = 4  # PIVRA_LLM_DEADLINE of this stack: each of A's replies is cut off after it
WORKSPACE_CAP = 2  # PIVRA_AI_CONCURRENCY_PER_WORKSPACE (the chatbot's own cap is higher)
AI_THREADS = 4  # the AI worker's pool: A's visitors alone could fill it without the caps
A_VISITORS = 5
GRACE = 2  # PIVRA_AI_UNANSWERED_GRACE_SECONDS


def _broker_down(*args: Any) -> None:
    """The enqueue of a reply fails: the broker is out of reach when the message commits."""
    raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


class _Endpoint(BaseHTTPRequestHandler):
    """An OpenAI-compatible endpoint: ``drip`` sends a token a second until the client hangs up,
    otherwise the answer comes at once. Records when each request arrived."""

    drip = False
    arrivals: list[float]

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.arrivals.append(time.monotonic())
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        try:
            if not self.drip:
                for piece in ["Fast ", "answer."]:
                    self.wfile.write(f"data: {json.dumps({'choices': [{'delta': {'content': piece}}]})}\n\n".encode())
                self.wfile.write(b"data: [DONE]\n\n")
                return
            while True:
                self.wfile.write(f"data: {json.dumps({'choices': [{'delta': {'content': 'drip '}}]})}\n\n".encode())
                self.wfile.flush()
                time.sleep(1)
        except OSError:
            pass  # the worker hung up at its deadline


def _serve(drip: bool) -> tuple[ThreadingHTTPServer, type[_Endpoint]]:
    handler = type("Endpoint", (_Endpoint,), {"drip": drip, "arrivals": []})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, handler


def _url(server: ThreadingHTTPServer) -> str:
    return f"http://127.0.0.1:{server.server_address[1]}/v1"


def _clear_redis() -> None:
    client = redis_lib.Redis.from_url(django_settings.REDIS_URL)
    client.delete("celery", "ai", "deliveries", "unacked", "unacked_index")  # no leftover task may run here
    stale = list(client.scan_iter(f"{django_settings.CHANNEL_PREFIX}:ai:*"))
    if stale:
        client.delete(*stale)
    client.close()


@pytest.fixture(scope="module")
def stack(django_db_setup: None, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[AppProcesses, Path]]:
    _clear_redis()
    db = connection.settings_dict
    database_url = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    if connection.vendor != "postgresql":
        database_url = f"sqlite:///{db['NAME']}"
    env = {
        **os.environ,
        "PIVRA_DATABASE_URL": database_url,
        "PIVRA_REDIS_URL": django_settings.REDIS_URL,
        "PIVRA_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PIVRA_OUTBOUND_ALLOW_PRIVATE": "true",
        "PIVRA_LLM_DEADLINE": str(DEADLINE),
        "PIVRA_AI_CONCURRENCY_PER_CHATBOT": str(WORKSPACE_CAP + 2),
        "PIVRA_AI_CONCURRENCY_PER_WORKSPACE": str(WORKSPACE_CAP),
        "PIVRA_AI_UNANSWERED_GRACE_SECONDS": str(GRACE),
        "PIVRA_DB_POOL_MAX": "8",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    logs = tmp_path_factory.mktemp("ai-stack-logs")
    app = start_app(env=env, port=free_port(), log_dir=logs, worker_concurrency=2, ai_concurrency=AI_THREADS)
    try:
        wait_showing_logs(
            lambda: httpx.get(f"{app.http_url}/healthz", timeout=10).status_code == 200,
            seconds=90,
            what="a healthy stack",
            logs=logs,
        )
        yield app, logs
    finally:
        app.stop()


@pytest.fixture
def endpoints() -> Iterator[tuple[type[_Endpoint], type[_Endpoint], str, str]]:
    _clear_redis()
    dripping, drip = _serve(drip=True)
    answering, fast = _serve(drip=False)
    yield drip, fast, _url(dripping), _url(answering)
    dripping.shutdown()
    answering.shutdown()


def _openai(bot: Chatbot, base_url: str) -> Chatbot:
    bot.ai_provider, bot.llm_base_url, bot.llm_api_key = Chatbot.Provider.OPENAI, base_url, "sk-test"
    bot.save()
    return bot


class Widget:
    """One visitor talking to the stack over the widget's HTTP API."""

    def __init__(self, base: str, public_key: str) -> None:
        self.base = base
        session = httpx.post(f"{base}/api/widget/session", json={"public_key": public_key}, timeout=10).json()
        self.token, self.conversation = session["token"], session["state"]["conversation"]
        self.sent = 0

    def post(self, path: str, body: dict[str, Any]) -> httpx.Response:
        headers = {"Authorization": f"Bearer {self.token}"}
        return httpx.post(f"{self.base}/api/widget{path}", json=body, headers=headers, timeout=10)

    def say(self, text: str) -> int:
        self.sent += 1
        response = self.post("/messages", {"client_id": f"m{self.sent}", "text": text})
        assert response.status_code == 200, response.text
        return int(response.json()["seq"])


def _ai_replies(conversation_public_id: str) -> list[Event]:
    return list(Event.objects.filter(conversation__public_id=conversation_public_id, author="ai").order_by("seq"))


@pytest.mark.timeout(180)
def test_a_dripping_ai_in_one_workspace_leaves_anothers_timeout_on_time_and_its_ai_answering(
    personas: Personas, stack: tuple[AppProcesses, Path], endpoints
) -> None:
    app, logs = stack
    drip, fast, drip_url, fast_url = endpoints
    bot_a = _openai(personas.chatbot, drip_url)
    bot_b = enable_handoff(_openai(personas.other_chatbot, fast_url), keywords=[], timeout=5)
    assert bot_a.workspace_id != bot_b.workspace_id

    a_visitors = [Widget(app.http_url, bot_a.public_key) for _ in range(A_VISITORS)]
    questions = {widget.conversation: widget.say(f"A's question {number}") for number, widget in enumerate(a_visitors)}
    # A is dripping: as many calls as its workspace may make are under way.
    wait_showing_logs(lambda: len(drip.arrivals) >= WORKSPACE_CAP, seconds=15, what="A's first calls", logs=logs)

    waiting = Widget(app.http_url, bot_b.public_key)
    assert waiting.post("/handoff", {"client_id": "h"}).status_code == 200
    asking = Widget(app.http_url, bot_b.public_key)
    asked_at = time.monotonic()
    asking.say("B's question")
    wait_showing_logs(lambda: bool(_ai_replies(asking.conversation)), seconds=30, what="B's AI answer", logs=logs)
    answered_in = time.monotonic() - asked_at
    (answer,) = _ai_replies(asking.conversation)
    assert answer.text == "Fast answer." and len(fast.arrivals) == 1
    # B did not wait for a thread or a slot of A's: its answer came while A's first calls were still
    # dripping (without the caps, A's visitors fill the AI pool and B's answer waits ~3.5 s here).
    assert answered_in < DEADLINE / 2, f"B's AI answer took {answered_in:.1f} s"
    a_answered = Event.objects.filter(conversation__chatbot=bot_a, author="ai").count()
    assert a_answered < A_VISITORS

    handoff = Handoff.objects.get(conversation__public_id=waiting.conversation)
    wait_showing_logs(
        lambda: Handoff.objects.filter(pk=handoff.pk, status="busy").exists(), seconds=30, what="Team busy", logs=logs
    )
    handoff.refresh_from_db()
    assert handoff.timed_out_at is not None
    late = handoff.timed_out_at - handoff.deadline_at
    assert timedelta(0) <= late <= timedelta(seconds=1), f"Team busy came {late.total_seconds():.2f} s late"

    # Every one of A's visitors gets one reply (the deadline cut each drip: the friendly error),
    # each from one call, never more than the workspace's cap at once.
    wait_showing_logs(
        lambda: Event.objects.filter(conversation__chatbot=bot_a, author="ai").count() >= A_VISITORS,
        seconds=90,
        what="A's replies",
        logs=logs,
    )
    for widget in a_visitors:
        replies = _ai_replies(widget.conversation)
        assert [r.data.get("reply_to") for r in replies] == [questions[widget.conversation]]
    assert len(drip.arrivals) == A_VISITORS
    starts = sorted(drip.arrivals)
    # A call lasts the whole deadline (the endpoint never finishes), so a third call may only
    # start once one of the first two has ended.
    gaps = [later - earlier for earlier, later in zip(starts, starts[WORKSPACE_CAP:], strict=False)]
    assert min(gaps) >= DEADLINE - 0.5, gaps


@pytest.mark.timeout(120)
def test_a_message_whose_reply_was_never_queued_is_answered_once_by_the_sweep(
    personas: Personas, stack: tuple[AppProcesses, Path], endpoints, monkeypatch
) -> None:
    _, logs = stack
    _, fast, _, fast_url = endpoints
    visitor, conversation = new_visitor(_openai(personas.other_chatbot, fast_url))
    with monkeypatch.context() as lost:  # the broker was out of reach when the message committed
        lost.setattr("conversations.tasks.generate_ai_reply.delay", _broker_down)
        seq = say(visitor, conversation, "Anyone there?").event.seq
    wait_showing_logs(
        lambda: Event.objects.filter(conversation=conversation, author="ai").exists(),
        seconds=60,
        what="the swept reply",
        logs=logs,
    )
    time.sleep(GRACE * 2)  # several more sweeps
    replies = list(Event.objects.filter(conversation=conversation, author="ai"))
    assert [(r.text, r.data["reply_to"]) for r in replies] == [("Fast answer.", seq)]
    assert len(fast.arrivals) == 1
