"""Real loopback receivers and builders shared by the actions tests (this module holds no tests)."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from actions.deliveries import outbox_event_dispatch
from actions.models import Action, Delivery, OutboxEvent
from actions.services import action_create
from chatbots.models import Chatbot
from conversations.services import visitor_create
from handoff.models import Handoff
from handoff.state import visitor_current_conversation
from pivra.stack import free_port
from tests.handoff_helpers import enable_handoff, request


@dataclass
class Hit:
    path: str
    headers: dict[str, str]
    body: bytes


@dataclass
class Reply:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b"ok"


class Receiver:
    """A real HTTP server on 127.0.0.1 that answers POSTs from a script (then 200 OK).

    ``hold_first`` makes the first request wait until ``release`` is set, for tests that kill a
    worker mid-delivery. ``hits`` lists every request that arrived, ``completed`` those answered.
    """

    def __init__(self, *replies: Reply, hold_first: bool = False) -> None:
        self.script: deque[Reply] = deque(replies)
        self.hits: list[Hit] = []
        self.completed: list[Hit] = []
        self.arrived = threading.Event()
        self.release = threading.Event()
        self.hold_first = hold_first
        self._lock = threading.Lock()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                hit = Hit(
                    path=self.path,
                    headers={k.lower(): v for k, v in self.headers.items()},
                    body=self.rfile.read(length),
                )
                with receiver._lock:
                    receiver.hits.append(hit)
                    first = len(receiver.hits) == 1
                    reply = receiver.script.popleft() if receiver.script else Reply()
                receiver.arrived.set()
                if first and receiver.hold_first:
                    receiver.release.wait(120)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.wfile.write(reply.body)
                except OSError:
                    return  # the sender is gone (a killed worker)
                with receiver._lock:
                    receiver.completed.append(hit)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def __enter__(self) -> Receiver:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r


class SmtpCollector:
    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        message = BytesParser(policy=policy.default).parsebytes(envelope.content)
        self.messages.append(message)
        return "250 Message accepted"


@contextmanager
def running_smtp(settings: Any) -> Iterator[SmtpCollector]:
    """A real SMTP server on loopback; Django's SMTP backend points at it."""
    collector = SmtpCollector()
    port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=port)
    controller.start()
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", port
    settings.EMAIL_HOST_USER = settings.EMAIL_HOST_PASSWORD = ""
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    try:
        yield collector
    finally:
        controller.stop()


def webhook_action(bot: Chatbot, url: str, *, events: list[str] | None = None, name: str = "CRM") -> Action:
    return action_create(
        workspace=bot.workspace,
        chatbot=bot,
        name=name,
        kind=Action.Kind.WEBHOOK,
        events=events or ["conversation.escalated"],
        url=url,
    )


def escalate(bot: Chatbot, *, page: str = "https://shop.example.com/pricing") -> Handoff:
    enable_handoff(bot)
    visitor = visitor_create(chatbot=bot, locale="en-GB", page=page)
    return request(visitor, visitor_current_conversation(visitor=visitor))


def escalate_and_dispatch(bot: Chatbot, **kwargs: Any) -> list[Delivery]:
    """Escalate, then fan the outbox row out as the dispatch task would."""
    escalate(bot, **kwargs)
    event = OutboxEvent.objects.filter(type="conversation.escalated").latest("created_at")
    ids = outbox_event_dispatch(event_id=str(event.pk))
    return list(Delivery.objects.filter(pk__in=ids))
