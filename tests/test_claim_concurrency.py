"""Races on PostgreSQL, with real threads and real connections: of N concurrent claims exactly one
wins, and "Continue with AI" never switches the visitor away from a claim that commits meanwhile."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection

from chatbots.models import Membership
from chatbots.services import membership_add, subscription_set
from conversations.models import Conversation
from handoff.models import Handoff
from handoff.transitions import claim as claim_module
from handoff.transitions import continue_ai as continue_ai_module
from handoff.transitions.claim import handoff_claim
from handoff.transitions.continue_ai import handoff_continue_with_ai
from handoff.transitions.timers import handoff_expire
from pivra.errors import Conflict
from tests.factories import make_chatbot, make_user, make_workspace
from tests.handoff_helpers import enable_handoff, new_visitor, request
from tests.pg_locks import backend_pid, wait_until, waiting_on_a_lock

CLAIMERS = 24


@pytest.mark.django_db(transaction=True)
def test_exactly_one_of_many_concurrent_claims_wins() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrency is tested on PostgreSQL")
    workspace = make_workspace("Busy shop", plan="business")
    subscription_set(workspace=workspace, plan_code="business")
    agents: list[User] = [make_user(f"agent{i}") for i in range(CLAIMERS)]
    for agent in agents:
        membership_add(workspace=workspace, user=agent, role=Membership.Role.AGENT)
    bot = enable_handoff(make_chatbot(workspace, "Shop bot"))

    for _trial in range(3):
        visitor, conversation = new_visitor(bot)
        request(visitor, conversation)
        barrier = threading.Barrier(CLAIMERS)
        winners: list[str] = []
        conflicts: list[str] = []
        errors: list[BaseException] = []

        def claim(
            agent: User,
            conversation_id: str = str(conversation.public_id),
            barrier: threading.Barrier = barrier,
            winners: list[str] = winners,
            conflicts: list[str] = conflicts,
            errors: list[BaseException] = errors,
        ) -> None:
            try:
                barrier.wait(timeout=30)
                handoff_claim(agent=agent, conversation_public_id=conversation_id)
                winners.append(agent.username)
            except Conflict as exc:
                conflicts.append(exc.detail)
            except BaseException as exc:  # reported below, so a crash is not mistaken for a loss
                errors.append(exc)
            finally:
                connection.close()

        threads = [threading.Thread(target=claim, args=(agent,)) for agent in agents]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)

        assert not errors, errors
        assert len(winners) == 1, winners
        assert len(conflicts) == CLAIMERS - 1
        assert set(conflicts) == {f"Already claimed by {winners[0]}."}
        handoff = Handoff.objects.get(conversation=conversation)
        assert handoff.claimed_by is not None and handoff.claimed_by.username == winners[0]
        assert conversation.events.filter(kind="handoff.claimed").count() == 1


@pytest.mark.django_db(transaction=True)
def test_continue_with_ai_never_switches_away_from_a_claim_committing_meanwhile(monkeypatch) -> None:
    """A claim has updated the handoff but not committed when the visitor presses "Continue with AI".

    The claim is held right there until the continue either gets past the conversation lock (the old
    plain read of the handoff, which saw it busy and switched the visitor to a fresh AI chat while
    the claim went on to commit) or waits for the handoff row's lock (it must: then it sees the
    claim and keeps the visitor with the agent)."""
    if connection.vendor != "postgresql":
        pytest.skip("concurrency is tested on PostgreSQL")
    workspace = make_workspace("Late shop", plan="business")
    agent = make_user("late-agent")
    membership_add(workspace=workspace, user=agent, role=Membership.Role.AGENT)
    bot = enable_handoff(make_chatbot(workspace, "Late bot"))
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    assert handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)

    claim_updated, continue_locked = threading.Event(), threading.Event()
    continue_pid: list[int] = []
    real_lock = claim_module.conversation_lock

    def conversation_lock(*, conversation_id: int) -> Conversation:
        if threading.current_thread().name == "claim":
            claim_updated.set()
            wait_until(
                lambda: continue_locked.is_set() or waiting_on_a_lock(continue_pid),
                "the continue holds the conversation or waits for a lock",
            )
            return real_lock(conversation_id=conversation_id)
        locked = real_lock(conversation_id=conversation_id)
        continue_locked.set()
        return locked

    monkeypatch.setattr(claim_module, "conversation_lock", conversation_lock)
    monkeypatch.setattr(continue_ai_module, "conversation_lock", conversation_lock)
    outcome: dict[str, Any] = {}
    errors: list[BaseException] = []

    def claim() -> None:
        try:
            outcome["claim"] = handoff_claim(agent=agent, conversation_public_id=str(conversation.public_id))
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    def continue_with_ai() -> None:
        try:
            continue_pid.append(backend_pid())
            wait_until(claim_updated.is_set, "the claim updated the handoff")
            outcome["continue"] = handoff_continue_with_ai(
                visitor=visitor, conversation_public_id=str(conversation.public_id), client_id="c-1"
            )
        except BaseException as exc:
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=claim, name="claim"), threading.Thread(target=continue_with_ai)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)

    assert not errors, errors
    assert outcome["claim"].status == "active"
    assert outcome["continue"].pk == conversation.pk, "the visitor was switched away from the live agent"
    assert not conversation.events.filter(kind="conversation.continued").exists()
    assert Conversation.objects.filter(visitor=visitor).count() == 1
