"""One door for outbound requests: the AI endpoint goes through the same vetted, address-pinned,
deadline-bound transport as webhooks; the platform key goes only to the platform URL; a tenant's
AI URL is checked like a webhook URL when saved and again on every request. Loopback only."""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from django.test import Client
from django.urls import reverse

from chatbots.models import Chatbot
from chatbots.responders import FRIENDLY_ERROR, ResponderError, openai_compat, responder_for
from conversations.ai import conversation_reply_with_ai
from conversations.models import Event
from tests.factories import Personas, chatbot_admin_form, make_chatbot, make_personas, make_workspace
from tests.handoff_helpers import new_visitor, say

PLATFORM_KEY = "sk-platform-operator-0123456789"
TENANT_KEY = "sk-tenant-own-key-42"


class RecordingServer(ThreadingHTTPServer):
    """A loopback "endpoint" that records every request's headers and answers like an
    OpenAI-compatible stream; ``drip`` sends one token every ``drip`` seconds for a long while."""

    daemon_threads = True

    def __init__(
        self, *, drip: float = 0.0, tokens: int = 3, token: str = "tok ", raw: bytes = b"", json_reply: bool = False
    ) -> None:
        self.headers_seen: list[dict[str, str]] = []
        self.paths: list[str] = []
        self.drip, self.tokens, self.token = drip, tokens, token
        # ``raw``: sent as the body instead of the token stream (as JSON when ``json_reply``).
        self.raw, self.json_reply = raw, json_reply
        self.sent = 0
        self.stop = threading.Event()
        super().__init__(("127.0.0.1", 0), _Handler)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: RecordingServer

    def log_message(self, *args: Any) -> None:
        pass

    def _record(self) -> None:
        self.server.headers_seen.append(dict(self.headers.items()))
        self.server.paths.append(self.path)

    def do_POST(self) -> None:
        self._record()
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.send_response(200)
        self.send_header("Content-Type", "application/json" if self.server.json_reply else "text/event-stream")
        self.end_headers()
        try:
            if self.server.raw:
                for start in range(0, len(self.server.raw), 65536):
                    self.wfile.write(self.server.raw[start : start + 65536])
                    self.server.sent += 65536
                return
            for _ in range(self.server.tokens):
                if self.server.stop.is_set():
                    return
                chunk = {"choices": [{"delta": {"content": self.server.token}}]}
                self.wfile.write(f"data: {json.dumps(chunk)}\n\n".encode())
                self.wfile.flush()
                self.server.sent += 1
                if self.server.drip:
                    self.server.stop.wait(self.server.drip)
            self.wfile.write(b"data: [DONE]\n\n")
        except OSError:
            pass  # the client hung up: what the deadline test wants

    def do_GET(self) -> None:  # a proxy would see "GET http://…" requests
        self._record()
        self.send_response(502)
        self.end_headers()


@contextmanager
def serving(server: RecordingServer) -> Iterator[RecordingServer]:
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


@pytest.fixture
def tenant_endpoint() -> Iterator[RecordingServer]:
    with serving(RecordingServer()) as server:
        yield server


@pytest.fixture
def platform_endpoint() -> Iterator[RecordingServer]:
    with serving(RecordingServer()) as server:
        yield server


@pytest.fixture
def platform(settings: Any, platform_endpoint: RecordingServer) -> RecordingServer:
    settings.LLM_BASE_URL = platform_endpoint.url
    settings.LLM_API_KEY = PLATFORM_KEY
    settings.LLM_MODEL = "platform-model"
    return platform_endpoint


def _bot(**fields: Any) -> Chatbot:
    return make_chatbot(make_workspace(), "Bot", ai_provider=Chatbot.Provider.OPENAI, **fields)


def _ask(bot: Chatbot) -> str:
    return "".join(responder_for(bot).stream(question="Hi", history=[]))


def _authorization(server: RecordingServer) -> list[str | None]:
    return [{k.lower(): v for k, v in h.items()}.get("authorization") for h in server.headers_seen]


# --- the platform key goes to the platform URL only ----------------------------------------------


@pytest.mark.django_db
def test_a_tenant_endpoint_with_no_key_never_sees_the_platform_key(
    settings: Any, platform: RecordingServer, tenant_endpoint: RecordingServer
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = True  # the "tenant" server is on loopback
    bot = _bot(llm_base_url=tenant_endpoint.url, llm_api_key="")

    assert _ask(bot) == "tok tok tok "

    assert len(tenant_endpoint.headers_seen) == 1
    assert _authorization(tenant_endpoint) == [None]
    assert all(PLATFORM_KEY not in value for value in tenant_endpoint.headers_seen[0].values())
    assert platform.headers_seen == []


@pytest.mark.django_db
def test_the_platform_url_receives_the_platform_key(settings: Any, platform: RecordingServer) -> None:
    # The platform URL is on loopback and private addresses are NOT allowed: the operator chose it.
    settings.OUTBOUND_ALLOW_PRIVATE = False
    settings.WEBHOOK_ALLOW_PRIVATE = False
    assert _ask(_bot(llm_base_url="", llm_api_key="")) == "tok tok tok "
    # The chatbot naming the platform URL itself (trailing slash or not) is the platform too.
    assert _ask(_bot(llm_base_url=platform.url + "/", llm_api_key="")) == "tok tok tok "

    assert _authorization(platform) == [f"Bearer {PLATFORM_KEY}", f"Bearer {PLATFORM_KEY}"]


@pytest.mark.django_db
def test_a_tenant_endpoint_with_its_own_key_gets_that_key(
    settings: Any, platform: RecordingServer, tenant_endpoint: RecordingServer
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = True
    _ask(_bot(llm_base_url=tenant_endpoint.url, llm_api_key=TENANT_KEY))
    assert _authorization(tenant_endpoint) == [f"Bearer {TENANT_KEY}"]


# --- checked again at request time ------------------------------------------------------------


@pytest.mark.django_db
def test_a_tenant_url_resolving_to_a_private_address_is_refused_at_request_time(
    settings: Any, tenant_endpoint: RecordingServer
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = False
    settings.WEBHOOK_ALLOW_PRIVATE = False
    port = tenant_endpoint.server_address[1]
    # Saved before the rules (or DNS) changed: "localhost" resolves to 127.0.0.1 when the request is made.
    bot = _bot(llm_base_url=f"http://localhost:{port}/v1", llm_api_key=TENANT_KEY)

    with pytest.raises(ResponderError, match="destination not allowed") as caught:
        _ask(bot)
    assert TENANT_KEY not in str(caught.value)
    assert tenant_endpoint.headers_seen == []  # nothing reached it

    settings.OUTBOUND_ALLOW_PRIVATE = True  # the same request goes through when private is allowed
    assert _ask(bot) == "tok tok tok "


@pytest.mark.django_db
def test_link_local_stays_closed_even_when_private_is_allowed(settings: Any) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = True
    bot = _bot(llm_base_url="http://169.254.169.254/latest", llm_api_key="")
    with pytest.raises(ResponderError, match="destination not allowed"):
        _ask(bot)


@pytest.mark.django_db
def test_environment_proxies_are_not_followed(
    settings: Any, monkeypatch: pytest.MonkeyPatch, tenant_endpoint: RecordingServer
) -> None:
    with serving(RecordingServer()) as proxy:
        for name in ("HTTP_PROXY", "http_proxy", "HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy"):
            monkeypatch.setenv(name, f"http://127.0.0.1:{proxy.server_address[1]}")
        for name in ("NO_PROXY", "no_proxy"):
            monkeypatch.delenv(name, raising=False)
        settings.OUTBOUND_ALLOW_PRIVATE = True
        assert _ask(_bot(llm_base_url=tenant_endpoint.url, llm_api_key="")) == "tok tok tok "
    assert proxy.headers_seen == [] and len(tenant_endpoint.headers_seen) == 1


# --- one overall deadline for the whole reply ------------------------------------------------------


@pytest.mark.django_db
def test_an_endpoint_dripping_tokens_is_cut_off_at_the_overall_deadline(settings: Any) -> None:
    # One token every 0.2 s for a minute: each read is quick (well under LLM_TIMEOUT), so only the
    # overall deadline can end it.
    with serving(RecordingServer(drip=0.2, tokens=300)) as server:
        settings.OUTBOUND_ALLOW_PRIVATE = True
        settings.LLM_TIMEOUT = 10.0
        settings.LLM_DEADLINE = 1.0
        received: list[str] = []
        with pytest.raises(ResponderError, match="timed out"):
            for piece in responder_for(_bot(llm_base_url=server.url)).stream(question="Hi", history=[]):
                received.append(piece)
    assert received, "tokens arrived before the deadline"
    assert len(received) < 300  # cut off: the reply was never completed


# --- validated when saved, with the same rules as webhook URLs -----------------------------------

REFUSED_URLS = [
    "http://169.254.169.254/latest/meta-data",  # link-local: cloud metadata
    "http://10.0.0.5/v1",
    "http://192.168.1.10/v1",
    "http://172.16.0.1/v1",
    "http://127.0.0.1:8000/v1",
    "http://[::1]:8000/v1",
    "http://[::ffff:127.0.0.1]/v1",  # IPv4-mapped loopback
    "http://[::ffff:7f00:1]/v1",  # IPv4-mapped loopback, hex spelling
    "http://100.64.0.1/v1",  # carrier-grade NAT
    "http://0.0.0.0:8000/v1",
    "http://localhost:11434/v1",
]


def _general_form(personas: Personas, **overrides: str) -> dict[str, str]:
    bot = personas.chatbot
    form = {
        "section": "general",
        "chatbot": str(bot.pk),
        "name": bot.name,
        "greeting": bot.greeting,
        "accent_color": bot.accent_color,
        "allowed_origins": "",
        "ai_provider": Chatbot.Provider.OPENAI,
        "llm_base_url": "",
        "llm_model": "m",
        "llm_api_key": "",
        "fallback_message": bot.fallback_message,
    }
    form.update(overrides)
    return form


@pytest.mark.django_db
@pytest.mark.parametrize("url", REFUSED_URLS)
def test_the_dashboard_refuses_an_internal_ai_url_with_a_message(
    client: Client, personas: Personas, settings: Any, url: str
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = False
    settings.WEBHOOK_ALLOW_PRIVATE = False
    settings.LLM_BASE_URL = ""
    client.force_login(personas.owner)
    response = client.post(reverse("dashboard:chatbot-settings"), _general_form(personas, llm_base_url=url))
    assert response.status_code == 200
    assert "That address is not allowed" in response.content.decode()
    personas.chatbot.refresh_from_db()
    assert personas.chatbot.llm_base_url == ""


@pytest.mark.django_db
def test_the_dashboard_accepts_private_urls_when_allowed_but_never_link_local(
    client: Client, personas: Personas, settings: Any
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = True
    client.force_login(personas.owner)
    page = reverse("dashboard:chatbot-settings")
    response = client.post(page, _general_form(personas, llm_base_url="http://127.0.0.1:11434/v1"))
    assert response.status_code == 302
    personas.chatbot.refresh_from_db()
    assert personas.chatbot.llm_base_url == "http://127.0.0.1:11434/v1"

    response = client.post(page, _general_form(personas, llm_base_url="http://169.254.169.254/v1"))
    assert response.status_code == 200 and "That address is not allowed" in response.content.decode()


@pytest.mark.django_db
def test_the_dashboard_accepts_public_urls_and_the_platform_url(
    client: Client, personas: Personas, settings: Any
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = False
    settings.WEBHOOK_ALLOW_PRIVATE = False
    settings.LLM_BASE_URL = "http://127.0.0.1:11434/v1"  # the operator's local model server
    client.force_login(personas.owner)
    page = reverse("dashboard:chatbot-settings")
    for url in ("https://api.example.com/v1", "http://127.0.0.1:11434/v1/"):
        response = client.post(page, _general_form(personas, llm_base_url=url))
        assert response.status_code == 302, url


@pytest.mark.django_db
def test_the_admin_refuses_an_internal_ai_url(
    client: Client, staff_user: Any, personas: Personas, settings: Any
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = False
    settings.WEBHOOK_ALLOW_PRIVATE = False
    settings.LLM_BASE_URL = ""
    client.force_login(staff_user)
    bot = personas.chatbot
    url = reverse("admin:chatbots_chatbot_change", args=[bot.pk])
    response = client.post(url, chatbot_admin_form(bot, llm_base_url="http://169.254.169.254/v1"))
    assert response.status_code == 200
    assert "That address is not allowed" in response.content.decode()
    bot.refresh_from_db()
    assert bot.llm_base_url == ""


def test_no_other_module_opens_its_own_http_client() -> None:
    """Anything added later that calls out must use pivra.outbound, not a client of its own."""
    root = Path(__file__).resolve().parent.parent
    opened = re.compile(
        r"httpx\.(Client|AsyncClient|stream|get|post|put|request|HTTPTransport)\("
        r"|urlopen\(|^\s*(import|from) (requests|aiohttp|urllib3)\b",
        re.MULTILINE,
    )
    offenders = []
    for path in root.glob("*/**/*.py"):
        if {".venv", "tests", "bench", "migrations"} & set(path.parts) or path.name == "outbound.py":
            continue
        if opened.search(path.read_text()):
            offenders.append(str(path.relative_to(root)))
    assert offenders == []


# --- the same through the visitor's reply pipeline ---------------------------------------------------


def _pipeline_bot(url: str) -> Chatbot:
    bot = make_personas().chatbot
    bot.ai_provider, bot.llm_base_url, bot.llm_api_key = Chatbot.Provider.OPENAI, url, ""
    bot.save()
    return bot


@pytest.mark.django_db(transaction=True)
def test_a_visitor_reply_from_a_tenant_endpoint_carries_no_platform_key(
    settings: Any, platform: RecordingServer, tenant_endpoint: RecordingServer
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = True
    visitor, conversation = new_visitor(_pipeline_bot(tenant_endpoint.url))
    received = say(visitor, conversation, "Shipping?")
    conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=received.event.seq)
    assert Event.objects.get(conversation=conversation, author="ai").text == "tok tok tok"
    assert _authorization(tenant_endpoint) == [None] and platform.headers_seen == []


@pytest.mark.django_db(transaction=True)
def test_a_visitor_reply_that_drips_past_the_deadline_ends_with_the_friendly_message(settings: Any) -> None:
    with serving(RecordingServer(drip=0.2, tokens=300)) as server:
        settings.OUTBOUND_ALLOW_PRIVATE = True
        settings.LLM_TIMEOUT = 10.0
        settings.LLM_DEADLINE = 1.0
        visitor, conversation = new_visitor(_pipeline_bot(server.url))
        received = say(visitor, conversation, "Shipping?")
        conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=received.event.seq)
        sent_when_cut = server.sent
    stored = Event.objects.get(conversation=conversation, author="ai")
    assert stored.text == FRIENDLY_ERROR and stored.data["error"] is True
    assert 0 < sent_when_cut < 300


# --- a tenant endpoint cannot make a worker hold an unbounded reply --------------------------------

HUGE = 8 * 1024 * 1024  # far past every cap, far below what would hurt the test run


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("server_kwargs", "reason"),
    [
        # One event line that never ends: httpx's iter_lines would buffer it until the deadline.
        ({"raw": b'data: {"choices": [{"delta": {"content": "' + b"x" * HUGE}, "event line over"),
        # A JSON reply with a huge body: read() would hold all of it.
        ({"raw": b'{"choices": [{"message": {"content": "' + b"x" * HUGE + b'"}}]}', "json_reply": True}, "more than"),
        # Well-formed small deltas, but an endless reply.
        ({"tokens": 200, "token": "y" * 1000}, "reply over"),
    ],
    ids=["line", "json-body", "reply-text"],
)
def test_an_oversized_reply_is_refused_before_it_is_all_read(
    settings: Any, server_kwargs: dict[str, Any], reason: str
) -> None:
    with serving(RecordingServer(**server_kwargs)) as server:
        settings.OUTBOUND_ALLOW_PRIVATE = True
        received: list[str] = []
        with pytest.raises(ResponderError, match=reason):
            for piece in responder_for(_bot(llm_base_url=server.url)).stream(question="Hi", history=[]):
                received.append(piece)
    assert sum(map(len, received)) <= openai_compat.MAX_REPLY_CHARS


@pytest.mark.django_db(transaction=True)
def test_an_oversized_visitor_reply_ends_with_the_friendly_message(settings: Any) -> None:
    # Small, well-formed deltas that never stop: without a cap all of it would be stored as one event.
    with serving(RecordingServer(tokens=200, token="y" * 1000)) as server:
        settings.OUTBOUND_ALLOW_PRIVATE = True
        visitor, conversation = new_visitor(_pipeline_bot(server.url))
        received = say(visitor, conversation, "Shipping?")
        conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=received.event.seq)
    stored = Event.objects.get(conversation=conversation, author="ai")
    assert stored.text == FRIENDLY_ERROR and stored.data["error"] is True


# --- a saved key never follows the URL to another server -------------------------------------------


@pytest.mark.django_db
def test_changing_the_url_in_the_dashboard_removes_the_saved_key(
    client: Client, settings: Any, tenant_endpoint: RecordingServer
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = True
    personas = make_personas()
    bot = personas.chatbot
    Chatbot.objects.filter(pk=bot.pk).update(
        ai_provider=Chatbot.Provider.OPENAI, llm_base_url="https://api.example.com/v1", llm_api_key=TENANT_KEY
    )
    client.force_login(personas.owner)
    page = reverse("dashboard:chatbot-settings")
    assert "Changing the URL removes the saved key" in client.get(page).content.decode()
    # The same URL, spelt differently: the key stays.
    same = _general_form(personas, llm_base_url="https://API.example.com/v1/")
    assert client.post(page, same).status_code == 302
    bot.refresh_from_db()
    assert bot.llm_api_key == TENANT_KEY
    # Pointed at another server with the key field left empty: the key is gone, never sent there.
    assert client.post(page, _general_form(personas, llm_base_url=tenant_endpoint.url)).status_code == 302
    bot.refresh_from_db()
    assert bot.llm_base_url == tenant_endpoint.url and bot.llm_api_key == ""
    _ask(bot)
    assert _authorization(tenant_endpoint) == [None]
    # A new key given with the new URL is kept.
    moved = _general_form(personas, llm_base_url="https://other.example.com/v1", llm_api_key="sk-for-other")
    assert client.post(page, moved).status_code == 302
    bot.refresh_from_db()
    assert bot.llm_api_key == "sk-for-other"


@pytest.mark.django_db
def test_changing_the_url_in_the_admin_removes_the_saved_key(client: Client, staff_user: Any) -> None:
    bot = _bot(llm_base_url="https://api.example.com/v1", llm_api_key=TENANT_KEY)
    client.force_login(staff_user)
    change = reverse("admin:chatbots_chatbot_change", args=[bot.pk])
    kept = chatbot_admin_form(bot, llm_base_url="https://api.example.com/v1", llm_api_key="")
    assert client.post(change, kept).status_code == 302
    bot.refresh_from_db()
    assert bot.llm_api_key == TENANT_KEY
    moved = chatbot_admin_form(bot, llm_base_url="https://evil.example.com/v1", llm_api_key="")
    assert client.post(change, moved).status_code == 302
    bot.refresh_from_db()
    assert (bot.llm_base_url, bot.llm_api_key) == ("https://evil.example.com/v1", "")
    again = chatbot_admin_form(bot, llm_base_url="https://api.example.com/v1", llm_api_key="sk-typed")
    assert client.post(change, again).status_code == 302
    bot.refresh_from_db()
    assert bot.llm_api_key == "sk-typed"
