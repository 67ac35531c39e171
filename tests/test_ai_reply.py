"""The AI's turn end to end in one process: a real loopback OpenAI-compatible server, the real Redis
channel layer, committed transactions (so broadcasts really leave)."""

from __future__ import annotations

import json
import logging
import threading
import uuid
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from chatbots.models import Chatbot
from chatbots.responders import FRIENDLY_ERROR
from conversations import ai
from conversations.ai import conversation_reply_with_ai
from conversations.ai_slots import ReplyLock
from conversations.models import Event
from pivra.realtime import visitor_group
from tests.channel_helpers import frames_heard
from tests.factories import make_personas
from tests.handoff_helpers import enable_handoff, new_visitor, request, say

pytestmark = pytest.mark.django_db(transaction=True)


class _Handler(BaseHTTPRequestHandler):
    mode = "stream"

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        length = int(self.headers.get("Content-Length", 0))
        self.rfile.read(length)
        if self.mode == "error":
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b'{"error": "overloaded"}')
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in ["Free ", "shipping ", "over $75."]:
            chunk = {"choices": [{"delta": {"content": piece}}]}
            self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture(autouse=True)
def _loopback_endpoints_allowed(settings: Any) -> None:
    # The fake AI endpoints listen on 127.0.0.1: a tenant URL there is refused unless private is allowed.
    settings.OUTBOUND_ALLOW_PRIVATE = True


@pytest.fixture
def llm_server() -> Iterator[tuple[str, type[_Handler]]]:
    handler = type("Handler", (_Handler,), {"mode": "stream"})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    server.shutdown()


def _frames_for(visitor_public_id: uuid.UUID, run: Any) -> list[dict[str, Any]]:
    """Everything broadcast to the visitor's widgets while ``run`` executes."""
    return frames_heard(visitor_group(visitor_public_id), run, quiet_seconds=1.0)


def _openai_bot(base_url: str) -> Chatbot:
    personas = make_personas()
    bot = personas.chatbot
    bot.ai_provider, bot.llm_base_url, bot.llm_api_key = Chatbot.Provider.OPENAI, base_url, "sk-test"
    bot.save()
    return bot


def test_the_openai_compatible_reply_streams_tokens_to_the_widget_then_stores_the_answer(llm_server) -> None:
    base_url, _ = llm_server
    visitor, conversation = new_visitor(_openai_bot(base_url))
    received = say(visitor, conversation, "Shipping?")
    frames = _frames_for(
        visitor.public_id,
        lambda: conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=received.event.seq),
    )
    kinds = [f["type"] for f in frames]
    assert kinds[0] == "typing" and frames[0]["on"] is True
    deltas = [f["text"] for f in frames if f["type"] == "ai.delta"]
    assert deltas == ["Free ", "shipping ", "over $75."]
    final = next(f for f in frames if f["type"] == "event")
    assert final["author"] == "ai" and final["text"] == "Free shipping over $75."
    assert kinds.index("event") > max(i for i, k in enumerate(kinds) if k == "ai.delta")
    assert frames[-1] == {"type": "typing", "conversation": str(conversation.public_id), "author": "ai", "on": False}


def test_a_provider_error_gives_a_friendly_message_and_never_a_stuck_typing_indicator(llm_server) -> None:
    base_url, handler = llm_server
    handler.mode = "error"
    visitor, conversation = new_visitor(_openai_bot(base_url))
    received = say(visitor, conversation, "Shipping?")
    frames = _frames_for(
        visitor.public_id,
        lambda: conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=received.event.seq),
    )
    stored = Event.objects.get(conversation=conversation, author="ai")
    assert stored.text == FRIENDLY_ERROR and stored.data["error"] is True
    assert frames[-1]["type"] == "typing" and frames[-1]["on"] is False
    assert not [f for f in frames if f["type"] == "ai.delta"]


def test_a_provider_error_logs_its_cause(llm_server, caplog) -> None:
    base_url, handler = llm_server
    handler.mode = "error"
    visitor, conversation = new_visitor(_openai_bot(base_url))
    received = say(visitor, conversation, "Shipping?")
    with caplog.at_level(logging.WARNING, logger="conversations.ai"):
        conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=received.event.seq)
    [record] = [r for r in caplog.records if r.name == "conversations.ai"]
    assert record.levelno == logging.WARNING
    assert str(conversation.public_id) in record.getMessage()
    assert "503" in record.getMessage()  # the provider's answer, for whoever reads the log
    assert "sk-test" not in record.getMessage()


class _Responder:
    """Streams fixed chunks, calling ``between`` after the first one."""

    def __init__(self, chunks: list[str], between: Callable[[], object] = lambda: None) -> None:
        self.chunks, self.between = chunks, between

    def stream(self, *, question: str, history: Any) -> Iterator[str]:
        for n, chunk in enumerate(self.chunks):
            yield chunk
            if n == 0:
                self.between()


def test_no_ai_token_is_published_after_the_handoff_state_at_the_production_check_interval(monkeypatch) -> None:
    assert ai.STATUS_CHECK_SECONDS > 0.1  # the real interval: the tokens below all come well within it
    personas = make_personas()
    bot = enable_handoff(personas.chatbot)
    visitor, conversation = new_visitor(bot)
    received = say(visitor, conversation, "Shipping?")
    responder = _Responder(["Free ", "shipping ", "over ", "$75."], between=lambda: request(visitor, conversation))
    monkeypatch.setattr("conversations.ai.responder_for", lambda chatbot: responder)
    frames = _frames_for(
        visitor.public_id,
        lambda: conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=received.event.seq),
    )
    kinds = [f["type"] for f in frames]
    handoff_at = next(i for i, f in enumerate(frames) if f["type"] == "state" and f["state"]["status"] == "handoff")
    assert [f["text"] for f in frames if f["type"] == "ai.delta"] == ["Free "]
    assert "ai.delta" not in kinds[handoff_at:]
    assert not Event.objects.filter(conversation=conversation, author="ai").exists()


def test_a_redelivered_reply_running_beside_the_original_stores_one_answer(monkeypatch) -> None:
    visitor, conversation = new_visitor(make_personas().chatbot)
    received = say(visitor, conversation, "Shipping?")

    def twin() -> None:
        # The broker redelivers the task while the original is still streaming, after the reply
        # lock's lease ran out (so the lock cannot stop it); the twin finishes first. The final
        # check under the row lock is the last guard.
        monkeypatch.setattr("conversations.ai.responder_for", lambda chatbot: _Responder(["Twin answer."]))
        monkeypatch.setattr("conversations.ai.ai_reply_lock", lambda **key: ReplyLock(key="expired", token=None))
        assert conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=received.event.seq)

    original = _Responder(["Original ", "answer."], between=twin)
    monkeypatch.setattr("conversations.ai.responder_for", lambda chatbot: original)
    assert conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=received.event.seq) is None
    answers = Event.objects.filter(conversation=conversation, author="ai")
    assert [(e.text, e.data["reply_to"]) for e in answers] == [("Twin answer.", received.event.seq)]
