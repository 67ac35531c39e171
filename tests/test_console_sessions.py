"""Sessions end everywhere: an open console socket closes (code 4401, a readable ``session.ended``
frame first) within 5 s of the agent's deactivation, password change or logout, at the session's
expiry, and on a command once the session no longer holds; after that it hears nothing more.

Against the real ASGI app, Redis channel layer and PostgreSQL; data is committed because consumers
read the database from their own threads. The same closes through daphne and the console page are
in tests/e2e/test_console_sessions.py."""

from __future__ import annotations

import asyncio

import pytest
from asgiref.sync import sync_to_async
from channels.testing import WebsocketCommunicator
from django.contrib.auth.models import User
from django.test import Client

from chatbots.models import Membership
from pivra.asgi import application
from pivra.console import consumers
from tests.factories import Personas, make_personas
from tests.handoff_helpers import enable_handoff, new_visitor, request

pytestmark = pytest.mark.django_db(transaction=True)
ORIGIN = [(b"origin", b"http://127.0.0.1:8000"), (b"host", b"127.0.0.1:8000")]
WITHIN = 5.0  # seconds: the acceptance's "within 5 s"


def _world() -> Personas:
    personas = make_personas()
    enable_handoff(personas.chatbot)
    return personas


def _signed_in(user: User, *, expiry: int | None = None) -> Client:
    client = Client()
    client.force_login(user)
    if expiry is not None:
        session = client.session
        session.set_expiry(expiry)
        session.save()
    return client


async def _connect(client: Client) -> WebsocketCommunicator:
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    socket = WebsocketCommunicator(application, "/ws/console/", headers=[*ORIGIN, (b"cookie", cookie)])
    connected, _ = await socket.connect()
    assert connected
    assert (await socket.receive_json_from(timeout=5))["type"] == "welcome"
    return socket


def _now() -> float:
    return asyncio.get_running_loop().time()


async def _assert_ended_within(socket: WebsocketCommunicator, seconds: float, *, since: float) -> None:
    """The socket says why, then closes with 4401, at most ``seconds`` after ``since`` (taken before
    the action); frames sent before that are skipped."""
    loop = asyncio.get_running_loop()
    deadline = since + seconds
    while True:
        output = await socket.receive_output(timeout=max(0.01, deadline - loop.time()))
        assert output["type"] == "websocket.send", output
        if '"session.ended"' in output["text"]:
            break
    assert output["text"] == (
        '{"type":"session.ended","code":"session_ended","detail":"Your session ended. Sign in again."}'
    )
    closed = await socket.receive_output(timeout=max(0.01, deadline - loop.time()))
    assert closed == {"type": "websocket.close", "code": 4401}
    assert loop.time() <= deadline


async def _assert_hears_nothing_more(socket: WebsocketCommunicator, world: Personas) -> None:
    """A new handoff in the agent's workspace does not reach the closed socket."""
    visitor, conversation = await sync_to_async(new_visitor)(world.chatbot)
    await sync_to_async(request)(visitor, conversation)
    assert await socket.receive_nothing(timeout=1)
    await socket.disconnect(code=4401)  # the client's side of the close, so the consumer finishes


async def _assert_still_live(socket: WebsocketCommunicator) -> None:
    await socket.send_json_to({"type": "ping"})
    frame = await socket.receive_json_from(timeout=5)
    while frame.get("type") == "presence":  # teammates' sockets coming and going are told to every console
        frame = await socket.receive_json_from(timeout=5)
    assert frame == {"type": "pong"}


async def test_a_deactivated_agents_socket_closes_within_5_s_and_hears_nothing_more() -> None:
    world = await sync_to_async(_world)()
    socket = await _connect(await sync_to_async(_signed_in)(world.teammate))

    def deactivate() -> None:  # as the admin does it: the flag, then save
        world.teammate.is_active = False
        world.teammate.save()

    started = _now()
    await sync_to_async(deactivate)()
    await _assert_ended_within(socket, WITHIN, since=started)
    await _assert_hears_nothing_more(socket, world)


async def test_deleting_the_agent_closes_their_socket_within_5_s() -> None:
    world = await sync_to_async(_world)()
    socket = await _connect(await sync_to_async(_signed_in)(world.teammate))
    started = _now()
    await sync_to_async(lambda: User.objects.get(pk=world.teammate.pk).delete())()
    await _assert_ended_within(socket, WITHIN, since=started)
    await _assert_hears_nothing_more(socket, world)


async def test_a_password_change_closes_the_sockets_of_every_session_of_the_agent() -> None:
    world = await sync_to_async(_world)()
    laptop = await _connect(await sync_to_async(_signed_in)(world.teammate))
    phone = await _connect(await sync_to_async(_signed_in)(world.teammate))
    colleague = await _connect(await sync_to_async(_signed_in)(world.owner))

    def change_password() -> None:
        world.teammate.set_password("a-new-pass-987")
        world.teammate.save()

    started = _now()
    await sync_to_async(change_password)()
    await _assert_ended_within(laptop, WITHIN, since=started)
    await _assert_ended_within(phone, WITHIN, since=started)
    await _assert_still_live(colleague)
    await _assert_hears_nothing_more(laptop, world)
    await phone.disconnect(code=4401)
    await colleague.disconnect()


async def test_logging_out_closes_the_sockets_of_that_session_only() -> None:
    world = await sync_to_async(_world)()
    laptop_client = await sync_to_async(_signed_in)(world.teammate)
    laptop = await _connect(laptop_client)
    laptop_tab = await _connect(laptop_client)
    phone = await _connect(await sync_to_async(_signed_in)(world.teammate))

    started = _now()
    response = await sync_to_async(laptop_client.post)("/accounts/logout/")
    assert response.status_code == 302
    await _assert_ended_within(laptop, WITHIN, since=started)
    await _assert_ended_within(laptop_tab, WITHIN, since=started)
    # The phone has its own session, which the laptop's logout does not end (as for HTTP).
    await _assert_still_live(phone)
    await _assert_hears_nothing_more(laptop, world)
    await laptop_tab.disconnect(code=4401)
    await phone.disconnect()


async def test_the_socket_closes_when_its_session_expires() -> None:
    world = await sync_to_async(_world)()
    started = _now()
    socket = await _connect(await sync_to_async(_signed_in)(world.teammate, expiry=2))
    await _assert_ended_within(socket, 2 + WITHIN, since=started)
    await _assert_hears_nothing_more(socket, world)


async def test_a_deactivation_no_signal_reports_is_found_by_the_next_command() -> None:
    world = await sync_to_async(_world)()
    visitor, conversation = await sync_to_async(new_visitor)(world.chatbot)
    await sync_to_async(request)(visitor, conversation)
    socket = await _connect(await sync_to_async(_signed_in)(world.teammate))
    # A queryset update sends no signal: only the re-check before the watch can see it.
    started = _now()
    await sync_to_async(User.objects.filter(pk=world.teammate.pk).update)(is_active=False)
    await socket.send_json_to({"type": "watch", "conversation": str(conversation.public_id), "last_seq": 0})
    await _assert_ended_within(socket, WITHIN, since=started)  # and no "watching", no replayed event before it
    await _assert_hears_nothing_more(socket, world)


async def test_a_deleted_session_is_found_by_the_periodic_recheck(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumers, "SESSION_RECHECK_SECONDS", 0.2)
    world = await sync_to_async(_world)()
    client = await sync_to_async(_signed_in)(world.teammate)
    socket = await _connect(client)
    # Sessions removed behind Django's back (a cleanup script, a store flush) send no signal either.
    started = _now()
    await sync_to_async(client.session.delete)()
    await _assert_ended_within(socket, WITHIN, since=started)
    await _assert_hears_nothing_more(socket, world)


async def test_removing_the_agents_last_membership_closes_the_socket_within_5_s() -> None:
    world = await sync_to_async(_world)()
    socket = await _connect(await sync_to_async(_signed_in)(world.teammate))
    loop = asyncio.get_running_loop()
    start = loop.time()
    await sync_to_async(Membership.objects.filter(user=world.teammate).delete)()
    while (output := await socket.receive_output(timeout=WITHIN))["type"] == "websocket.send":
        pass
    assert output == {"type": "websocket.close", "code": 4403}
    assert loop.time() - start < WITHIN
    await _assert_hears_nothing_more(socket, world)


async def test_a_socket_without_a_valid_session_is_told_to_sign_in_and_closed() -> None:
    world = await sync_to_async(_world)()
    client = await sync_to_async(_signed_in)(world.teammate)
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    await sync_to_async(client.post)("/accounts/logout/")  # the cookie now names a flushed session
    started = _now()
    socket = WebsocketCommunicator(application, "/ws/console/", headers=[*ORIGIN, (b"cookie", cookie)])
    connected, _ = await socket.connect()
    assert connected  # accepted only so the page can read why it is closed
    await _assert_ended_within(socket, WITHIN, since=started)
    await socket.disconnect(code=4401)


async def test_unrelated_saves_of_the_agent_do_not_end_the_session() -> None:
    world = await sync_to_async(_world)()
    socket = await _connect(await sync_to_async(_signed_in)(world.teammate))

    def edit_profile() -> None:
        world.teammate.first_name = "Tess"
        world.teammate.save()

    await sync_to_async(edit_profile)()
    await _assert_still_live(socket)
    await socket.disconnect()


# --- the console's HTTP API uses the same session: it ends there too -------------------------------


@pytest.mark.parametrize("how", ["logout", "deactivation", "password change"])
def test_the_console_api_refuses_a_session_that_ended(how: str) -> None:
    world = _world()
    client = _signed_in(world.teammate)
    assert client.get("/api/console/handoffs").status_code == 200
    stolen = Client()
    stolen.cookies["sessionid"] = client.cookies["sessionid"].value  # the same cookie, replayed later
    if how == "logout":
        client.post("/accounts/logout/")
    elif how == "deactivation":
        User.objects.filter(pk=world.teammate.pk).update(is_active=False)
    else:
        world.teammate.set_password("a-new-pass-987")
        world.teammate.save()
    response = stolen.get("/api/console/handoffs")
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


# --- the handshake's check and a failing session store --------------------------------------------


async def test_a_deactivation_committed_during_the_handshake_is_not_missed(monkeypatch: pytest.MonkeyPatch) -> None:
    """The deactivation commits right after the handshake's session check has read a valid session:
    its nudge must reach the socket (the user's group is joined before that check), not wait 30 s."""
    world = await sync_to_async(_world)()
    client = await sync_to_async(_signed_in)(world.teammate)
    real_check = consumers.session_validity

    def check_then_deactivate(**kwargs: object) -> object:
        validity = real_check(**kwargs)  # type: ignore[arg-type]
        if getattr(validity, "valid", False) and User.objects.filter(pk=world.teammate.pk, is_active=True).exists():
            world.teammate.is_active = False
            world.teammate.save()  # the nudge is sent on this commit
        return validity

    monkeypatch.setattr(consumers, "session_validity", check_then_deactivate)
    started = _now()
    cookie = f"sessionid={client.cookies['sessionid'].value}".encode()
    socket = WebsocketCommunicator(application, "/ws/console/", headers=[*ORIGIN, (b"cookie", cookie)])
    connected, _ = await socket.connect()
    assert connected
    await _assert_ended_within(socket, WITHIN, since=started)
    await _assert_hears_nothing_more(socket, world)


def _failing_store(**kwargs: object) -> object:
    raise ConnectionError("the session store is down")


async def _assert_closed_unverified(socket: WebsocketCommunicator) -> None:
    """Closed with 4503 (the page reconnects later), with nothing sent before the close."""
    assert await socket.receive_output(timeout=WITHIN) == {"type": "websocket.close", "code": 4503}


async def test_a_failing_session_check_is_tolerated_twice_then_the_socket_closes(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = await sync_to_async(_world)()
    socket = await _connect(await sync_to_async(_signed_in)(world.teammate))
    monkeypatch.setattr(consumers, "session_validity", _failing_store)
    await _assert_still_live(socket)  # one failed check: a blip
    await _assert_still_live(socket)  # two
    await socket.send_json_to({"type": "ping"})  # the third in a row fails closed: no pong
    await _assert_closed_unverified(socket)
    await _assert_hears_nothing_more(socket, world)


async def test_a_session_check_that_recovers_resets_the_count(monkeypatch: pytest.MonkeyPatch) -> None:
    world = await sync_to_async(_world)()
    socket = await _connect(await sync_to_async(_signed_in)(world.teammate))
    real_check = consumers.session_validity
    for _ in range(3):
        monkeypatch.setattr(consumers, "session_validity", _failing_store)
        await _assert_still_live(socket)
        await _assert_still_live(socket)
        monkeypatch.setattr(consumers, "session_validity", real_check)
        await _assert_still_live(socket)
    await socket.disconnect()


async def test_the_periodic_recheck_fails_closed_while_the_store_is_down(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(consumers, "SESSION_RECHECK_SECONDS", 0.2)
    monkeypatch.setattr(consumers, "SESSION_RETRY_SECONDS", 0.1)
    world = await sync_to_async(_world)()
    socket = await _connect(await sync_to_async(_signed_in)(world.teammate))
    monkeypatch.setattr(consumers, "session_validity", _failing_store)
    await _assert_closed_unverified(socket)  # without any command from the page
    await _assert_hears_nothing_more(socket, world)


async def test_no_frame_is_forwarded_once_the_session_went_unverified_too_long(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    world = await sync_to_async(_world)()
    socket = await _connect(await sync_to_async(_signed_in)(world.teammate))
    # A store that hangs reports no failure: only the age of the last good check tells.
    monkeypatch.setattr(consumers, "SESSION_UNVERIFIED_MAX_SECONDS", 0.0)
    visitor, conversation = await sync_to_async(new_visitor)(world.chatbot)
    await sync_to_async(request)(visitor, conversation)  # a handoff the socket would otherwise be told about
    await _assert_closed_unverified(socket)
    await socket.disconnect(code=4503)
