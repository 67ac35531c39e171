"""An agent's reply racing a resolve, and two copies of one resend racing each other — on
PostgreSQL, with real threads and real connections.

The reply locks the conversation and only then reads the handoff and the resend's stored event:
a lock that had to wait re-reads only the locked row, so anything read by that same statement
would be as old as the statement's start (a resolve committed meanwhile would look still active)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from types import ModuleType
from typing import Any

import pytest
from django.db import connection

from conversations.models import Event
from handoff.transitions import reply as reply_module
from handoff.transitions import resolve as resolve_module
from handoff.transitions.claim import handoff_claim
from handoff.transitions.reply import handoff_reply
from handoff.transitions.resolve import handoff_resolve
from pivra.errors import Conflict
from tests.factories import make_personas
from tests.handoff_helpers import enable_handoff, new_visitor, request
from tests.pg_locks import backend_pid, wait_until, waiting_on_a_lock

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrency is tested on PostgreSQL")


def _claimed() -> tuple[Any, str]:
    """(the assignee, the conversation id) of a claimed handoff."""
    personas = make_personas()
    enable_handoff(personas.chatbot)
    visitor, conversation = new_visitor(personas.chatbot)
    request(visitor, conversation)
    handoff_claim(agent=personas.teammate, conversation_public_id=str(conversation.public_id))
    return personas.teammate, str(conversation.public_id)


def _hold_before_commit(
    monkeypatch: pytest.MonkeyPatch, module: ModuleType, name: str, thread: str, waiter: list[int]
) -> threading.Event:
    """Make ``module.<name>`` in thread ``thread`` hold — its transaction open, the conversation
    locked — until the backend in ``waiter`` waits for a lock; the returned event says it holds."""
    holding = threading.Event()
    real = getattr(module, name)

    def held(*args: Any, **kwargs: Any) -> Any:
        result = real(*args, **kwargs)
        if threading.current_thread().name == thread:
            holding.set()
            wait_until(lambda: waiting_on_a_lock(waiter), "the other side waits for the conversation lock")
        return result

    monkeypatch.setattr(module, name, held)
    return holding


def _run(*targets: tuple[str, Callable[[], Any]]) -> tuple[dict[str, Any], list[BaseException]]:
    outcome: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run(name: str, target: Callable[[], Any]) -> None:
        try:
            outcome[name] = target()
        except BaseException as exc:  # reported by the caller
            outcome[name] = exc
            if not isinstance(exc, Conflict):
                errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=t, name=t[0]) for t in targets]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcome, errors


def test_a_reply_racing_a_resolve_is_refused_and_nothing_follows_the_resolve(monkeypatch: pytest.MonkeyPatch) -> None:
    agent, conversation = _claimed()
    reply_pid: list[int] = []
    # The resolve has updated the handoff, closed the conversation and appended its event; it holds
    # the conversation's lock, uncommitted, until the reply waits for that lock.
    resolve_holds = _hold_before_commit(monkeypatch, resolve_module, "outbox_handoff_event", "resolve", reply_pid)

    def reply() -> Any:
        reply_pid.append(backend_pid())
        wait_until(resolve_holds.is_set, "the resolve holds the conversation")
        return handoff_reply(agent=agent, conversation_public_id=conversation, text="Too late?", client_id="late-1")

    outcome, errors = _run(
        ("resolve", lambda: handoff_resolve(agent=agent, conversation_public_id=conversation)),
        ("reply", reply),
    )
    assert not errors, errors
    assert outcome["resolve"].status == "resolved"
    refused = outcome["reply"]
    assert isinstance(refused, Conflict) and refused.code == "handoff_resolved", refused
    kinds = list(
        Event.objects.filter(conversation__public_id=conversation).order_by("seq").values_list("kind", flat=True)
    )
    assert kinds[-1] == "handoff.resolved", kinds
    assert not Event.objects.filter(client_id="late-1").exists()


def test_two_copies_of_one_resend_at_once_are_stored_once_and_both_answered(monkeypatch: pytest.MonkeyPatch) -> None:
    agent, conversation = _claimed()
    second_pid: list[int] = []
    # The first copy has appended its event and holds the lock, uncommitted, until the second waits for it.
    first_holds = _hold_before_commit(monkeypatch, reply_module, "event_append", "first", second_pid)
    barrier = threading.Barrier(2)

    def send(name: str) -> Callable[[], Any]:
        def go() -> Any:
            if name == "second":
                second_pid.append(backend_pid())
            barrier.wait(timeout=30)
            if name == "second":
                wait_until(first_holds.is_set, "the first copy holds the conversation")
            return handoff_reply(agent=agent, conversation_public_id=conversation, text="Once", client_id="twice")

        return go

    outcome, errors = _run(("first", send("first")), ("second", send("second")))
    assert not errors, errors
    first, second = outcome["first"], outcome["second"]
    assert (first.duplicate, second.duplicate) == (False, True)
    assert first.event.seq == second.event.seq
    assert Event.objects.filter(client_id="twice").count() == 1


def test_a_resend_that_raced_past_the_read_ends_as_the_stored_copy_not_a_500(monkeypatch: pytest.MonkeyPatch) -> None:
    """The database's unique constraint is the last word: its IntegrityError answers as a resend."""
    agent, conversation = _claimed()
    stored = handoff_reply(agent=agent, conversation_public_id=conversation, text="Once", client_id="dup")
    real = reply_module.reply_target

    def missed_read(**kwargs: Any) -> Any:  # as if the stored copy had not been seen
        target = real(**kwargs)
        return None if target is None else (*target[:3], None)

    monkeypatch.setattr(reply_module, "reply_target", missed_read)
    again = handoff_reply(agent=agent, conversation_public_id=conversation, text="Once", client_id="dup")
    assert (again.duplicate, again.event.pk) == (True, stored.event.pk)
    with pytest.raises(Conflict) as reused:
        handoff_reply(agent=agent, conversation_public_id=conversation, text="Other", client_id="dup")
    assert reused.value.code == "client_id_reused"
    assert Event.objects.filter(client_id="dup").count() == 1
