"""Shared by the responder tests: a small FAQ, and a fake OpenAI-compatible server (a real HTTP server
on loopback) with the chatbot that points at it."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from chatbots.models import Chatbot, KnowledgeEntry
from chatbots.services import knowledge_entry_save
from tests.factories import make_chatbot, make_workspace

API_KEY = "sk-test-secret-123"
SHIPPING_ANSWER = "Standard delivery is $4.99; shipping is free on orders over $50."

FAQ = [
    ("How much does shipping cost?", SHIPPING_ANSWER),
    ("What is your return policy?", "You can return any item within 30 days for a full refund."),
    ("When are you open?", "Our store is open Monday to Friday, 9am to 6pm."),
    ("Do you ship internationally?", "Yes, we ship to more than 40 countries worldwide."),
    ("How can I reset my password?", "Click 'Forgot password' on the login page and follow the email."),
    ("Do you offer gift cards?", "Yes, gift cards from $10 to $500 are available in the shop."),
]


def add_entries(chatbot: Chatbot, entries: list[tuple[str, str]]) -> list[KnowledgeEntry]:
    return [knowledge_entry_save(chatbot=chatbot, question=q, answer=a) for q, a in entries]


class FakeLLMServer(ThreadingHTTPServer):
    """A real HTTP server speaking (or deliberately botching) the chat-completions streaming API."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "stream"
        self.chunks = ["Hel", "lo", ", wor", "ld!"]
        self.requests: list[dict[str, Any]] = []
        # Set by the test once it holds the first chunk: the rest is only sent then, which proves the client
        # yields chunks as they arrive rather than after the whole response.
        self.gate: threading.Event | None = None
        self.release = threading.Event()  # ends the "slow" handler at teardown

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: FakeLLMServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
        getattr(self, f"_mode_{self.server.mode}")()

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

    def _send(self, raw: str) -> None:
        self.wfile.write(raw.encode())
        self.wfile.flush()

    def _event(self, payload: Any) -> None:
        self._send(f"data: {json.dumps(payload)}\n\n")

    def _mode_stream(self) -> None:
        self._start_stream()
        self._event({"choices": [{"delta": {"role": "assistant"}}]})  # role-only chunks carry no text
        for n, chunk in enumerate(self.server.chunks):
            self._event({"choices": [{"delta": {"content": chunk}}]})
            if n == 0 and self.server.gate is not None and not self.server.gate.wait(10):
                return  # the client never took the first chunk: end without the rest, so the test fails
        self._event({"choices": [], "usage": {"total_tokens": 7}})  # usage chunks have no choices
        self._send("data: [DONE]\n\n")

    def _mode_status_500(self) -> None:
        body = f"upstream exploded while checking key {API_KEY}".encode()
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _mode_slow(self) -> None:
        self.server.release.wait(30)

    def _mode_malformed(self) -> None:
        self._start_stream()
        self._send('data: {"choices": [{"delta": \n\n')
        self._send("data: [DONE]\n\n")

    def _mode_truncated(self) -> None:
        self._start_stream()
        self._send(": keep-alive\n\n")

    def _mode_error_event(self) -> None:
        self._start_stream()
        self._event({"error": {"message": "model overloaded"}})

    def _mode_json(self) -> None:
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "Whole reply."}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


def llm_chatbot(server: FakeLLMServer, **fields: Any) -> Chatbot:
    fields = {
        "ai_provider": Chatbot.Provider.OPENAI,
        "llm_base_url": server.url,
        "llm_api_key": API_KEY,
        "llm_model": "test-model",
        **fields,
    }
    return make_chatbot(make_workspace(), "Shopbot", **fields)
