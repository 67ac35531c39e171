"""Hypothesis drives random sequences of every service and checks the invariants after each step."""

from __future__ import annotations

import itertools
import uuid
from datetime import timedelta

import pytest
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from actions.models import OutboxEvent
from chatbots.models import Membership
from chatbots.services import membership_add
from conversations.ai import conversation_reply_with_ai
from conversations.models import Conversation, Event
from handoff.models import Handoff
from handoff.services import (
    handoff_claim,
    handoff_continue_with_ai,
    handoff_expire_overdue,
    handoff_offer_answer,
    handoff_reply,
    handoff_resolve,
    lead_capture,
)
from handoff.state import visitor_current_conversation
from pivra.errors import DomainError
from tests.factories import make_chatbot, make_user, make_workspace
from tests.handoff_helpers import enable_handoff, new_visitor, request, say

_names = itertools.count()


class _EchoResponder:
    def stream(self, *, question, history):
        yield "echo: " + question


class HandoffMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        n = next(_names)
        owner = make_user(f"sm-owner-{n}")
        self.workspace = make_workspace(f"SM {n}", owner=owner)
        second = make_user(f"sm-agent-{n}")
        membership_add(workspace=self.workspace, user=second, role=Membership.Role.AGENT)
        self.agents = [owner, second]
        self.bot = enable_handoff(make_chatbot(self.workspace, f"SM bot {n}"), keywords=["human please"])
        self.visitor, _ = new_visitor(self.bot)
        self.clock = timezone.now()
        self.replies_by: dict[int, set[int]] = {}

    def _current(self) -> Conversation:
        return visitor_current_conversation(visitor=self.visitor)

    def _try(self, fn, *args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except DomainError:
            return None

    @rule(text=st.sampled_from(["hello", "shipping?", "human please", "thanks"]))
    def visitor_says(self, text: str) -> None:
        self._try(say, self.visitor, self._current(), text)

    @rule()
    def ai_answers_the_last_visitor_message(self) -> None:
        conversation = self._current()
        last = conversation.events.filter(author="visitor").order_by("-seq").first()
        if last is not None:
            import conversations.ai as ai

            original = ai.responder_for
            ai.responder_for = lambda chatbot: _EchoResponder()
            try:
                conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=last.seq)
            finally:
                ai.responder_for = original

    @rule()
    def visitor_presses_talk_to_a_human(self) -> None:
        self._try(request, self.visitor, self._current(), now=self.clock)

    @rule(accept=st.booleans())
    def visitor_answers_an_offer(self, accept: bool) -> None:
        conversation = self._current()
        offer = conversation.events.filter(kind="handoff.offer").order_by("-seq").first()
        if offer is not None:
            self._try(
                handoff_offer_answer,
                visitor=self.visitor,
                conversation_public_id=str(conversation.public_id),
                offer_seq=offer.seq,
                accept=accept,
                client_id=uuid.uuid4().hex,
                now=self.clock,
            )

    @rule(agent=st.integers(0, 1))
    def agent_claims(self, agent: int) -> None:
        for handoff in Handoff.objects.filter(chatbot=self.bot).exclude(status="resolved"):
            self._try(
                handoff_claim, agent=self.agents[agent], conversation_public_id=str(handoff.conversation.public_id)
            )

    @rule(agent=st.integers(0, 1))
    def agent_replies(self, agent: int) -> None:
        for handoff in Handoff.objects.filter(chatbot=self.bot):
            result = self._try(
                handoff_reply,
                agent=self.agents[agent],
                conversation_public_id=str(handoff.conversation.public_id),
                text="agent here",
                client_id=uuid.uuid4().hex,
            )
            if result is not None:
                self.replies_by.setdefault(handoff.pk, set()).add(self.agents[agent].pk)

    @rule(agent=st.integers(0, 1))
    def agent_resolves(self, agent: int) -> None:
        for handoff in Handoff.objects.filter(chatbot=self.bot).exclude(status="resolved"):
            self._try(
                handoff_resolve, agent=self.agents[agent], conversation_public_id=str(handoff.conversation.public_id)
            )

    @rule(seconds=st.sampled_from([1, 60, 200]))
    def time_passes(self, seconds: int) -> None:
        self.clock += timedelta(seconds=seconds)
        handoff_expire_overdue(now=self.clock)

    @rule()
    def visitor_leaves_a_number_and_continues(self) -> None:
        conversation = self._current()
        self._try(
            lead_capture,
            visitor=self.visitor,
            conversation_public_id=str(conversation.public_id),
            phone="+44 7911 123456",
        )
        self._try(handoff_continue_with_ai, visitor=self.visitor, conversation_public_id=str(conversation.public_id))

    @invariant()
    def seq_is_gapless_and_matches_last_seq(self) -> None:
        for conversation in Conversation.objects.filter(visitor=self.visitor):
            seqs = list(conversation.events.order_by("seq").values_list("seq", flat=True))
            assert seqs == list(range(1, len(seqs) + 1))
            assert conversation.last_seq == len(seqs)

    @invariant()
    def no_ai_text_after_a_request(self) -> None:
        for handoff in Handoff.objects.filter(chatbot=self.bot):
            requested = handoff.conversation.events.get(kind="handoff.requested").seq
            assert not handoff.conversation.events.filter(author=Event.Author.AI, seq__gt=requested).exists()

    @invariant()
    def at_most_one_assignee_and_replies_only_from_them(self) -> None:
        for handoff in Handoff.objects.filter(chatbot=self.bot):
            claims = handoff.conversation.events.filter(kind="handoff.claimed")
            assert claims.count() <= 1
            authors = set(handoff.conversation.events.filter(author="agent").values_list("agent_id", flat=True))
            assert authors <= ({handoff.claimed_by_id} if handoff.claimed_by_id else set())
            assert self.replies_by.get(handoff.pk, set()) <= authors

    @invariant()
    def exactly_one_escalation_per_handoff(self) -> None:
        handoffs = Handoff.objects.filter(chatbot=self.bot).count()
        escalations = OutboxEvent.objects.filter(type="conversation.escalated", chatbot_id=self.bot.pk).count()
        assert escalations == handoffs

    @invariant()
    def conversation_status_follows_the_handoff(self) -> None:
        for handoff in Handoff.objects.filter(chatbot=self.bot).select_related("conversation"):
            expected = "closed" if handoff.status == "resolved" else "handoff"
            assert handoff.conversation.status == expected


@pytest.mark.django_db
def test_the_handoff_state_machine_keeps_its_invariants() -> None:
    run_state_machine_as_test(
        HandoffMachine,
        settings=settings(
            max_examples=25,
            stateful_step_count=20,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
