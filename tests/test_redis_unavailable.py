"""Redis out of reach: every request path that needs it answers 503 ``unavailable`` with Retry-After
(never a 500), the sockets close with 4503 (the clients' "retry"), and database-only paths — a
signed-in agent's pages and console API reads, a returning visitor's session — keep working.

Redis is made unreachable for real: the cache and the channel layer point at a loopback port nothing
listens on (the shared test Redis is never touched)."""

from __future__ import annotations

import socket as socket_lib
from collections.abc import Callable
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from axes.handlers.proxy import AxesProxyHandler
from channels.testing import WebsocketCommunicator
from django.conf import settings as django_settings
from django.contrib.sessions.backends.cached_db import KEY_PREFIX
from django.contrib.sessions.models import Session
from django.core.cache import cache
from django.test import Client
from django.urls import reverse

from actions.models import Action
from conversations.models import Event, Visitor
from pivra.asgi import application
from pivra.servers import start_redis
from pivra.unavailable import CLOSE_UNAVAILABLE, RETRY_AFTER_SECONDS
from tests.factories import Personas, make_personas
from tests.handoff_helpers import enable_handoff, new_visitor, request

ORIGIN = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]


def _closed_port_url() -> str:
    with socket_lib.socket() as probe:  # a port the kernel just handed out and nobody listens on
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    return f"redis://127.0.0.1:{port}/0"


@pytest.fixture
def down(settings: Any, monkeypatch: pytest.MonkeyPatch) -> Callable[[], str]:
    """Call it to take Redis away (for the rest of the test)."""
    return lambda: _down(settings, monkeypatch)


@pytest.fixture
def redis_down(down: Callable[[], str]) -> str:
    """Redis away from the start of the test."""
    return down()


@pytest.fixture
def world(db: None) -> Personas:
    personas = make_personas()
    enable_handoff(personas.chatbot)
    return personas


def _assert_unavailable(response: Any) -> None:
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    body = response.json()
    assert body["code"] == "unavailable"
    assert "try again" in body["detail"].lower()


def _widget_session(public_key: str, token: str | None = None, address: str = "203.0.113.7") -> Any:
    return Client(REMOTE_ADDR=address).post(
        "/api/widget/session", {"public_key": public_key, "token": token}, content_type="application/json"
    )


def _signed_in(user: Any) -> Client:
    client = Client()
    client.force_login(user)  # the session is written to the database and to Redis (still up)
    return client


@pytest.mark.django_db
def test_a_new_widget_session_is_refused_with_503_not_500(world: Personas, redis_down: str) -> None:
    # A new visitor is rate limited per address in Redis: without Redis the limit fails closed.
    _assert_unavailable(_widget_session(world.chatbot.public_key))
    assert not Visitor.objects.exists()


@pytest.mark.django_db
def test_a_returning_visitors_session_needs_only_the_database(world: Personas, down: Callable[[], str]) -> None:
    first = _widget_session(world.chatbot.public_key).json()
    down()
    again = _widget_session(world.chatbot.public_key, token=first["token"])
    assert again.status_code == 200, again.content
    assert again.json()["visitor"] == first["visitor"]


def _down(settings: Any, monkeypatch: pytest.MonkeyPatch) -> str:
    """Point the cache (sessions, rate limits, login throttle) and the channel layer at a dead port."""
    url = _closed_port_url()
    # axes keeps the cache it was built with: build it afresh over the dead one (restored afterwards).
    monkeypatch.setattr(AxesProxyHandler, "implementation", None)
    settings.CACHES = {"default": {**django_settings.CACHES["default"], "LOCATION": url}}
    settings.CHANNEL_LAYERS = _layers_at(url)
    return url


def _layers_at(url: str) -> dict[str, Any]:
    layer: dict[str, Any] = django_settings.CHANNEL_LAYERS["default"]
    return {"default": {**layer, "CONFIG": {**layer["CONFIG"], "hosts": [url]}}}


@pytest.mark.django_db
def test_a_widget_message_is_refused_with_503_and_nothing_is_stored(world: Personas, down: Callable[[], str]) -> None:
    token = _widget_session(world.chatbot.public_key).json()["token"]
    down()
    http = Client(REMOTE_ADDR="203.0.113.8", HTTP_AUTHORIZATION=f"Bearer {token}")
    for path, body in (
        ("/messages", {"client_id": "m-1", "text": "Hello?"}),
        ("/handoff", {"client_id": "h-1"}),
        ("/new", {"client_id": "n-1"}),
    ):
        _assert_unavailable(http.post(f"/api/widget{path}", body, content_type="application/json"))
    assert not Event.objects.filter(client_id__in=["m-1", "h-1", "n-1"]).exists()


@pytest.mark.django_db(transaction=True)
def test_the_sse_stream_is_refused_with_503(world: Personas, down: Callable[[], str]) -> None:
    # It subscribes in Redis: the same answer, so the widget backs off and retries.
    token = _widget_session(world.chatbot.public_key).json()["token"]
    down()
    _assert_unavailable(Client(HTTP_AUTHORIZATION=f"Bearer {token}").get("/api/widget/stream"))


@pytest.mark.django_db
def test_the_console_reads_its_session_from_the_database(world: Personas, down: Callable[[], str]) -> None:
    visitor, conversation = new_visitor(world.chatbot)
    request(visitor, conversation)
    owner = _signed_in(world.owner)
    uncached = _signed_in(world.teammate)
    # One session whose cached copy is gone (a Redis restarted without it): the database is the record.
    cache.delete(KEY_PREFIX + uncached.cookies["sessionid"].value)
    down()
    assert Session.objects.count() == 2
    for client in (owner, uncached):
        page = client.get("/dashboard/")
        assert page.status_code == 200, page.content[:300]
        assert page.wsgi_request.user.is_authenticated
        rows = client.get("/api/console/handoffs")
        assert rows.status_code == 200, rows.content
        assert [row["conversation"] for row in rows.json()] == [str(conversation.public_id)]


@pytest.mark.django_db(transaction=True)
def test_an_agent_claims_replies_and_resolves_from_the_database(world: Personas, down: Callable[[], str]) -> None:
    """The console's writes need no Redis: committed, answered 200; their broadcasts (on commit) fail
    quietly and push-repair republishes them later."""
    visitor, conversation = new_visitor(world.chatbot)
    request(visitor, conversation)
    owner = _signed_in(world.owner)
    down()
    base = f"/api/console/handoffs/{conversation.public_id}"
    assert owner.post(f"{base}/claim").status_code == 200
    reply = owner.post(f"{base}/reply", {"client_id": "r-1", "text": "I'm here"}, content_type="application/json")
    assert reply.status_code == 201, reply.content
    assert Event.objects.filter(conversation=conversation, client_id="r-1", author="agent").count() == 1
    assert owner.post(f"{base}/resolve").status_code == 200


@pytest.mark.django_db
def test_login_fails_closed_with_a_readable_503_page(world: Personas, redis_down: str) -> None:
    # The login throttle counts in Redis: without it, no password is checked at all.
    response = Client().post("/accounts/login/", {"username": world.owner.username, "password": "pass-12345"})
    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert b"Pivra is reconnecting" in response.content
    assert not Session.objects.exists()


@pytest.mark.django_db
def test_a_password_reset_request_fails_closed_too(world: Personas, redis_down: str) -> None:
    # Its hourly budgets are counted in Redis: no email leaves without them.
    response = Client().post("/accounts/password_reset/", {"email": "owner@example.com"})
    assert response.status_code == 503
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert b"Pivra is reconnecting" in response.content


@pytest.mark.django_db
def test_a_logout_while_redis_is_away_changes_nothing(world: Personas, down: Callable[[], str]) -> None:
    owner = _signed_in(world.owner)
    down()
    # Deleting the session row while its cached copy stays would sign the cookie back in once Redis
    # returns: the logout is refused instead, and the session is intact in both stores.
    response = owner.post("/accounts/logout/")
    assert response.status_code == 503
    assert Session.objects.count() == 1
    assert owner.get("/dashboard/").status_code == 200


@pytest.mark.django_db
def test_an_api_path_never_answers_500_for_a_broker_outage(world: Personas, monkeypatch: Any) -> None:
    """kombu's OperationalError (a Celery enqueue with the broker down) inside an operation is 503 too."""
    from kombu.exceptions import OperationalError

    from pivra.widget import operations

    token = _widget_session(world.chatbot.public_key).json()["token"]

    def broker_down(**kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr(operations, "widget_events", broker_down)
    http = Client(HTTP_AUTHORIZATION=f"Bearer {token}")
    _assert_unavailable(http.get("/api/widget/events?after_seq=0"))


@pytest.mark.django_db(transaction=True)
async def test_a_widget_socket_closes_with_the_retry_code(down: Callable[[], str]) -> None:
    down()
    socket = WebsocketCommunicator(application, "/ws/widget/", headers=ORIGIN)
    connected, _ = await socket.connect()
    assert connected  # accepted only to be closed with a code the page can read
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": CLOSE_UNAVAILABLE}


@pytest.mark.django_db(transaction=True)
async def test_a_console_socket_closes_with_the_retry_code(down: Callable[[], str]) -> None:
    world = await sync_to_async(make_personas)()
    client = await sync_to_async(_signed_in)(world.owner)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    down()
    socket = WebsocketCommunicator(application, "/ws/console/", headers=[*ORIGIN, (b"cookie", cookie)])
    connected, _ = await socket.connect()
    assert connected
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": CLOSE_UNAVAILABLE}


def _hello_token(public_key: str) -> str:
    return str(_widget_session(public_key).json()["token"])


@pytest.mark.django_db(transaction=True)
async def test_a_widget_action_refused_for_redis_gets_unavailable_then_the_retry_close(
    settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The socket is open (the channel layer subscribed) when the cache goes: the frame is answered
    ``unavailable`` with its client_id — the widget keeps it pending — and the socket closes with 4503,
    so the widget resends it after its reconnect."""
    world = await sync_to_async(make_personas)()
    token = await sync_to_async(_hello_token)(world.chatbot.public_key)
    socket = WebsocketCommunicator(application, "/ws/widget/", headers=ORIGIN)
    assert (await socket.connect())[0]
    await socket.send_json_to({"type": "hello", "token": token, "conversation": None, "last_seq": 0})
    assert (await socket.receive_json_from(timeout=5))["type"] == "welcome"
    monkeypatch.setattr(AxesProxyHandler, "implementation", None)
    settings.CACHES = {"default": {**django_settings.CACHES["default"], "LOCATION": _closed_port_url()}}
    await socket.send_json_to({"type": "message", "client_id": "ws-1", "text": "Anyone there?"})
    refused = await socket.receive_json_from(timeout=5)
    assert (refused["type"], refused["code"], refused["client_id"]) == ("error", "unavailable", "ws-1")
    assert refused["retry_after"] == RETRY_AFTER_SECONDS
    assert await socket.receive_output(timeout=5) == {"type": "websocket.close", "code": CLOSE_UNAVAILABLE}
    assert not await sync_to_async(Event.objects.filter(client_id="ws-1").exists)()


@pytest.mark.django_db(transaction=True)
async def test_open_sockets_close_with_the_retry_code_when_redis_goes_away(settings: Any) -> None:
    """A socket subscribed before Redis died would stay open and deaf (pub/sub loses what is published
    meanwhile): the channel layer tells it, and it closes with 4503 — the client reconnects and replays."""
    private = await sync_to_async(start_redis)()
    try:
        settings.CHANNEL_LAYERS = _layers_at(private.url)
        world = await sync_to_async(make_personas)()
        token = await sync_to_async(_hello_token)(world.chatbot.public_key)
        widget = WebsocketCommunicator(application, "/ws/widget/", headers=ORIGIN)
        assert (await widget.connect())[0]
        await widget.send_json_to({"type": "hello", "token": token, "conversation": None, "last_seq": 0})
        assert (await widget.receive_json_from(timeout=5))["type"] == "welcome"
        private.stop()
        assert await widget.receive_output(timeout=15) == {"type": "websocket.close", "code": CLOSE_UNAVAILABLE}
    finally:
        private.stop()


@pytest.mark.django_db
def test_a_new_webhook_secret_is_shown_when_its_one_time_page_cannot_hold_it(
    world: Personas, down: Callable[[], str]
) -> None:
    """The secret is saved and shown once: without Redis the POST's own answer shows it (a 503 after
    the save would lose it for good — the owner would have to rotate it)."""
    client = _signed_in(world.owner)
    down()
    response = client.post(
        reverse("dashboard:action-create"),
        {
            "chatbot": world.chatbot.pk,
            "name": "Zapier",
            "kind": "webhook",
            "events": ["conversation.escalated"],
            "url": "https://hooks.zapier.com/hooks/catch/1/abc/",
            "recipients": "",
        },
    )
    action = Action.objects.get()
    assert response.status_code == 200, response.content
    page = response.content.decode()
    assert action.secret in page and "you won't see it again" in page
    assert response["Cache-Control"] == "no-store"
