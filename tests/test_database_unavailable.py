"""PostgreSQL out of reach is a pause, answered ``unavailable`` like a Redis outage, never a 500: what
counts (no connection, the pool's wait running out, a server shutting down or starting up — not a
deadlock or a statement timeout), and the console command's one retry of its session check on a
connection a restart closed. The real outage — PostgreSQL killed and restarted under the console
socket and the console API — is tests/e2e/test_postgres_outage.py."""

from __future__ import annotations

import logging
from typing import Any

import psycopg
import psycopg.errors
import pytest
from asgiref.sync import sync_to_async
from django.db import InterfaceError as DjangoInterfaceError
from django.db import OperationalError as DjangoOperationalError
from django.test import Client
from psycopg_pool import PoolTimeout

from handoff.transitions import reply as reply_module
from pivra.console import commands, frames
from pivra.console.session_validity import SessionValidity
from pivra.unavailable import RETRY_AFTER_SECONDS, is_database_unavailable, is_unavailable, log_unavailable
from tests.factories import Personas, make_personas
from tests.handoff_helpers import enable_handoff, new_visitor, request
from tests.test_console_socket_commands import (  # noqa: F401 - the fixture hands the command threads' connections back
    _answer,
    _command_connections_back,
    _console,
    _reply,
)


def _wrapped(error: BaseException) -> DjangoOperationalError:
    """As Django raises a psycopg error: its own type, the driver's as ``__cause__``."""
    try:
        raise DjangoOperationalError(str(error)) from error
    except DjangoOperationalError as exc:
        return exc


def _server_error(sqlstate_class: type[psycopg.Error]) -> psycopg.Error:
    """A server-reported error of that SQLSTATE (its ``sqlstate`` comes from the class)."""
    return sqlstate_class("from the server")


DOWN = [
    psycopg.OperationalError("connection failed: Connection refused"),  # no SQLSTATE: no connection at all
    psycopg.OperationalError("consuming input failed: server closed the connection unexpectedly"),
    PoolTimeout("couldn't get a connection after 10.00 sec"),
    psycopg.InterfaceError("the connection is closed"),
    _server_error(psycopg.errors.AdminShutdown),  # 57P01: terminating connection (fast shutdown)
    _server_error(psycopg.errors.CannotConnectNow),  # 57P03: the database system is starting up
    _server_error(psycopg.errors.ConnectionFailure),  # 08006
    _server_error(psycopg.errors.TooManyConnections),  # 53300
    DjangoInterfaceError("connection already closed"),
]
NOT_DOWN = [
    _server_error(psycopg.errors.DeadlockDetected),  # an OperationalError, but a retryable conflict
    _server_error(psycopg.errors.QueryCanceled),  # a statement timeout
    _server_error(psycopg.errors.LockNotAvailable),
    _server_error(psycopg.errors.UniqueViolation),
    DjangoOperationalError("no cause: judged by the driver's error it wraps"),
    ValueError("nothing to do with the database"),
]


@pytest.mark.parametrize("error", DOWN, ids=lambda e: type(e).__name__)
def test_postgres_out_of_reach_is_unavailable_also_when_django_wraps_it(error: BaseException) -> None:
    assert is_database_unavailable(error) and is_unavailable(error)
    assert is_database_unavailable(_wrapped(error)) and is_unavailable(_wrapped(error))


@pytest.mark.parametrize("error", NOT_DOWN, ids=lambda e: type(e).__name__)
def test_a_database_error_that_is_no_outage_stays_a_bug(error: BaseException) -> None:
    assert not is_database_unavailable(error) and not is_unavailable(error)
    assert not is_unavailable(_wrapped(error))


def test_the_log_line_names_postgresql(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="pivra.unavailable"):
        log_unavailable("test database line", _wrapped(PoolTimeout("couldn't get a connection")))
    assert "PostgreSQL unavailable (test database line): OperationalError" in caplog.text


def _claimed_world() -> tuple[Personas, str]:
    """A handoff claimed by the teammate (its conversation's public id)."""
    personas = make_personas()
    enable_handoff(personas.chatbot)
    visitor, conversation = new_visitor(personas.chatbot)
    request(visitor, conversation)
    from handoff.transitions.claim import handoff_claim

    handoff_claim(agent=personas.teammate, conversation_public_id=str(conversation.public_id))
    return personas, str(conversation.public_id)


@pytest.fixture
def claimed(db: None) -> tuple[Personas, str]:
    return _claimed_world()


def test_the_console_api_answers_503_when_postgres_goes_away_mid_reply(
    claimed: tuple[Personas, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    personas, conversation = claimed

    def connection_lost(**kwargs: Any) -> None:
        raise _wrapped(psycopg.OperationalError("server closed the connection unexpectedly"))

    monkeypatch.setattr(reply_module, "_reply_locked", connection_lost)
    client = Client()
    client.force_login(personas.teammate)
    response = client.post(
        f"/api/console/handoffs/{conversation}/reply",
        {"text": "Hi", "client_id": "r-1"},
        content_type="application/json",
    )
    assert response.status_code == 503, response.content
    assert response["Retry-After"] == str(RETRY_AFTER_SECONDS)
    assert response.json()["code"] == "unavailable" and response.json()["detail"]


def _command(conversation: str) -> Any:
    return frames.client_frame_adapter.validate_python(
        {"type": "reply", "conversation_id": conversation, "text": "Hi", "client_id": "r-retry"}
    )


@pytest.mark.django_db(transaction=True)  # the retry closes the connection, which a test transaction cannot survive
def test_a_command_checks_its_session_again_on_a_fresh_connection_after_a_restart(
    claimed: tuple[Personas, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The first query on a pooled connection from before a PostgreSQL restart fails; the session
    check — the command's first query — is run once more, and the command then runs."""
    personas, conversation = claimed
    calls: list[int] = []

    def stale_then_real(**kwargs: Any) -> SessionValidity:
        calls.append(1)
        if len(calls) == 1:
            raise _wrapped(psycopg.OperationalError("consuming input failed: server closed the connection"))
        return SessionValidity(valid=True, user=personas.teammate)

    monkeypatch.setattr(commands, "session_validity", stale_then_real)
    outcome = commands.console_command(session_key="k", user_id=personas.teammate.pk, frame=_command(conversation))
    assert len(calls) == 2
    assert outcome.validity is not None and outcome.answer is not None
    assert outcome.answer["type"] == "ack" and outcome.answer["client_id"] == "r-retry"


def test_a_command_does_not_wait_twice_for_a_postgres_that_is_down(
    claimed: tuple[Personas, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """No connection to be had (the pool waited its 10 s): not tried again; the consumer answers
    ``unavailable`` and counts a failed session check."""
    personas, conversation = claimed
    calls: list[int] = []

    def pool_timeout(**kwargs: Any) -> SessionValidity:
        calls.append(1)
        raise _wrapped(PoolTimeout("couldn't get a connection after 10.00 sec"))

    monkeypatch.setattr(commands, "session_validity", pool_timeout)
    outcome = commands.console_command(session_key="k", user_id=personas.teammate.pk, frame=_command(conversation))
    assert (len(calls), outcome.validity, outcome.answer) == (1, None, None)


@pytest.mark.django_db(transaction=True)
async def test_a_socket_command_cut_off_by_postgres_is_answered_unavailable_and_the_socket_stays(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """PostgreSQL gone after the session check, mid-reply: ``unavailable`` with the client id (it was
    ``server_error``), and the socket keeps serving — the page sends the reply again on it."""
    personas, conversation = await sync_to_async(_claimed_world)()
    socket = await _console(personas.teammate)

    def connection_lost(**kwargs: Any) -> None:
        raise _wrapped(psycopg.OperationalError("server closed the connection unexpectedly"))

    with monkeypatch.context() as patch:
        patch.setattr(reply_module, "_reply_locked", connection_lost)
        cut = await _answer(socket, _reply(conversation, "r-cut"))
    assert (cut["type"], cut["code"], cut["client_id"]) == ("error", "unavailable", "r-cut")
    assert "try again" in cut["detail"].lower()
    again = await _answer(socket, _reply(conversation, "r-cut"))
    assert (again["type"], again["duplicate"]) == ("ack", False)
    await socket.disconnect()
