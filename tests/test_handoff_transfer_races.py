"""Races on PostgreSQL with real threads: the holder's transfer and release and an owner's take-over
on one live chat at the same moment — exactly one wins, the others get a refusal, and the thread has
exactly one event, the winner's, with no gap. (A resolve is not in the race: resolving a chat that a
release or transfer has just put back in the queue is allowed; tests/test_handoff_races.py has it.)"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Callable
from functools import partial
from typing import Any

import pytest
from django.db import connection

from chatbots.models import Membership
from chatbots.presence import presence_release, presence_touch
from chatbots.services import membership_add
from conversations.models import Event
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from handoff.transitions.release import handoff_release
from handoff.transitions.takeover import handoff_take_over
from handoff.transitions.transfer import handoff_transfer
from pivra.errors import DomainError
from tests.factories import make_personas, make_user
from tests.handoff_helpers import enable_handoff, new_visitor, request

KIND = {
    "transfer": "handoff.transferred",
    "release": "handoff.released",
    "take_over": "handoff.taken_over",
}


@pytest.mark.django_db(transaction=True)
def test_transfer_release_take_over_and_resolve_racing_on_one_chat_have_one_winner() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrency is tested on PostgreSQL")
    personas = make_personas()
    bot = enable_handoff(personas.chatbot)
    holder, owner = personas.teammate, personas.owner
    colleague = make_user("colleague")
    membership_add(workspace=personas.workspace, user=colleague, role=Membership.Role.AGENT)
    socket = f"race-{uuid.uuid4().hex}"
    presence_touch(workspace_id=personas.workspace.pk, user_id=colleague.pk, socket_id=socket)
    try:
        for _trial in range(4):
            visitor, conversation = new_visitor(bot)
            request(visitor, conversation)
            key = str(conversation.public_id)
            handoff_claim(agent=holder, conversation_public_id=key)
            moves: dict[str, Callable[[], Any]] = {
                "transfer": partial(
                    handoff_transfer, agent=holder, conversation_public_id=key, to_user_id=colleague.pk
                ),
                "release": partial(handoff_release, agent=holder, conversation_public_id=key),
                "take_over": partial(handoff_take_over, agent=owner, conversation_public_id=key),
            }
            barrier = threading.Barrier(len(moves))
            winners: list[str] = []
            refused: list[str] = []
            errors: list[BaseException] = []

            def run(
                name: str,
                move: Callable[[], Any],
                barrier: threading.Barrier = barrier,
                winners: list[str] = winners,
                refused: list[str] = refused,
                errors: list[BaseException] = errors,
            ) -> None:
                try:
                    barrier.wait(timeout=30)
                    move()
                    winners.append(name)
                except DomainError as exc:
                    refused.append(exc.code)
                except BaseException as exc:  # reported below: a crash is not a loss
                    errors.append(exc)
                finally:
                    connection.close()

            threads = [threading.Thread(target=run, args=item) for item in moves.items()]
            for thread in threads:
                thread.start()
            for thread in threads:
                thread.join(60)

            assert not errors, errors
            assert len(winners) == 1, (winners, refused)
            kinds = list(Event.objects.filter(conversation=conversation).order_by("seq").values_list("kind", flat=True))
            assert kinds[-1] == KIND[winners[0]], kinds
            assert sum(kind in KIND.values() for kind in kinds) == 1, kinds
            seqs = list(Event.objects.filter(conversation=conversation).order_by("seq").values_list("seq", flat=True))
            assert seqs == list(range(1, len(seqs) + 1))  # gapless
            handoff = Handoff.objects.get(conversation=conversation)
            expected = {"transfer": "pending", "release": "pending", "take_over": "active"}
            assert handoff.status == expected[winners[0]]
    finally:
        presence_release(workspace_id=personas.workspace.pk, user_id=colleague.pk, socket_id=socket, now=0)
