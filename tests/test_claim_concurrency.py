"""Of N concurrent claims on PostgreSQL exactly one wins (real threads, real connections)."""

from __future__ import annotations

import threading

import pytest
from django.contrib.auth.models import User
from django.db import connection

from chatbots.models import Membership
from chatbots.services import membership_add, subscription_set
from handoff.models import Handoff
from handoff.services import handoff_claim
from pivra.errors import Conflict
from tests.factories import make_chatbot, make_user, make_workspace
from tests.handoff_helpers import enable_handoff, new_visitor, request

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
