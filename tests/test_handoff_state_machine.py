"""Hypothesis drives random sequences of every service and checks the invariants after each step.

One visitor of one chatbot with two agents. Rules cover every transition (request by button or by
keyword, claim, reply, resolve, timeout, lead capture, continue with AI, start a new conversation),
an AI reply that starts before a request and finishes after it, and actions on the visitor's older
conversations (a late claim of the one they left). Issue 15 adds release, transfer (and its decline
or expiry), the owner's take-over, the second agent's removal or deactivation (and return), and idle
auto-resolve. The invariants are checked against the database after every step: among them, the
thread's handoff events replay to the handoff's state, and no live handoff has an agent who cannot act.
"""

from __future__ import annotations

import itertools
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

import conversations.ai as ai
from actions.models import OutboxEvent
from chatbots.models import Membership
from chatbots.services import membership_add
from conversations.ai import conversation_reply_with_ai
from conversations.models import Conversation, Event
from handoff.models import Handoff
from handoff.state import visitor_current_conversation
from handoff.transitions import request as request_module
from handoff.transitions import transfer as transfer_module
from handoff.transitions.claim import handoff_claim
from handoff.transitions.continue_ai import conversation_start_new, handoff_continue_with_ai
from handoff.transitions.idle import handoff_idle_sweep
from handoff.transitions.lead import lead_capture
from handoff.transitions.offers import handoff_offer_decline, handoff_offers_expire
from handoff.transitions.release import handoff_release
from handoff.transitions.reply import handoff_reply
from handoff.transitions.request import handoff_offer_answer
from handoff.transitions.requeue import stranded_handoffs
from handoff.transitions.resolve import handoff_resolve
from handoff.transitions.takeover import handoff_take_over
from handoff.transitions.timers import handoff_expire_overdue
from handoff.transitions.transfer import handoff_transfer
from pivra.errors import DomainError
from tests.factories import make_chatbot, make_workspace
from tests.handoff_helpers import enable_handoff, new_visitor, request, say

_names = itertools.count()
KEYWORD = "human please"
IDLE = timedelta(minutes=31)  # past the default idle limit (PIVRA_HANDOFF_IDLE_MINUTES, 30)

# What each thread event does to a handoff: (the statuses it may follow, the status after).
TRANSITIONS = {
    "handoff.claimed": ({"pending", "busy"}, "active"),
    "handoff.released": ({"active"}, "pending"),
    "handoff.transferred": ({"active"}, "pending"),
    "handoff.transfer_ended": ({"pending", "busy"}, None),  # None: the status stays
    "handoff.taken_over": ({"active"}, "active"),
    "handoff.resolved": ({"pending", "busy", "active"}, "resolved"),
    "handoff.timed_out": ({"pending"}, "busy"),
}


class _Responder:
    """Streams two chunks; ``between`` runs after the first, while the reply is still being generated."""

    def __init__(self, between: Callable[[], Any] | None = None) -> None:
        self.between = between

    def stream(self, *, question: str, history: Any) -> Iterator[str]:
        yield "echo: "
        if self.between is not None:
            self.between()
        yield question


def _pick(items: list[Any], index: int) -> Any:
    return items[index % len(items)] if items else None


class HandoffMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        n = next(_names)
        # No password: hashing one costs a fifth of a second, most of an example's time.
        owner = User.objects.create_user(username=f"sm-owner-{n}", password=None)
        self.workspace = make_workspace(f"SM {n}", owner=owner)
        second = User.objects.create_user(username=f"sm-agent-{n}", password=None)
        membership_add(workspace=self.workspace, user=second, role=Membership.Role.AGENT)
        self.agents = [owner, second]
        self.bot = enable_handoff(make_chatbot(self.workspace, f"SM bot {n}"), keywords=[KEYWORD])
        self.visitor, _ = new_visitor(self.bot)
        self.clock = timezone.now()
        self.replies_by: dict[int, set[int]] = {}

    # --- helpers ---------------------------------------------------------------------------

    def _current(self) -> Conversation:
        return visitor_current_conversation(visitor=self.visitor)

    def _conversations(self) -> list[Conversation]:
        return list(Conversation.objects.filter(visitor=self.visitor).order_by("created_at"))

    def _handoffs(self, *statuses: str) -> list[Handoff]:
        query = Handoff.objects.filter(chatbot=self.bot).select_related("conversation").order_by("requested_at")
        return list(query.filter(status__in=statuses) if statuses else query)

    def _try(self, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        try:
            return fn(*args, **kwargs)
        except DomainError:
            return None

    def _ai_reply(self, conversation: Conversation, reply_to_seq: int, responder: _Responder, fast: bool) -> Any:
        original, interval = ai.responder_for, ai.STATUS_CHECK_SECONDS
        ai.responder_for = lambda chatbot: responder
        # fast: the stream re-reads the status at every chunk, so it stops early; otherwise only the
        # final write under the conversation's lock stands between the reply and the thread.
        ai.STATUS_CHECK_SECONDS = 0.0 if fast else 60.0
        try:
            return conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=reply_to_seq)
        finally:
            ai.responder_for, ai.STATUS_CHECK_SECONDS = original, interval

    # --- visitor ---------------------------------------------------------------------------

    @rule(text=st.sampled_from(["hello", "shipping?", KEYWORD, "Human... PLEASE!", "thanks"]))
    def visitor_says(self, text: str) -> None:
        self._try(say, self.visitor, self._current(), text)

    @rule(fast=st.booleans())
    def ai_answers_the_last_visitor_message(self, fast: bool) -> None:
        conversation = self._current()
        last = conversation.events.filter(author="visitor", kind="message").order_by("-seq").first()
        if last is not None:
            self._ai_reply(conversation, last.seq, _Responder(), fast)

    @rule(via=st.sampled_from(["button", "keyword"]), fast=st.booleans())
    def ai_reply_generation_spans_a_request(self, via: str, fast: bool) -> None:
        """The AI starts answering, the visitor asks for a person meanwhile, then the AI finishes."""
        conversation = self._current()
        if conversation.status != Conversation.Status.OPEN:
            return
        question = say(self.visitor, conversation, "what are your opening hours?").event

        def ask_for_a_person() -> None:
            if via == "button":
                request(self.visitor, conversation, now=self.clock)
                return
            say(self.visitor, conversation, KEYWORD)
            offer = conversation.events.filter(kind="handoff.offer").order_by("-seq").first()
            assert offer is not None
            handoff_offer_answer(
                visitor=self.visitor,
                conversation_public_id=str(conversation.public_id),
                offer_seq=offer.seq,
                accept=True,
                client_id=uuid.uuid4().hex,
                now=self.clock,
            )

        stored = self._ai_reply(conversation, question.seq, _Responder(ask_for_a_person), fast)
        assert stored is None, "an AI reply finished after a request was stored"
        assert Handoff.objects.filter(conversation=conversation).exists()

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

    @rule(phone=st.sampled_from(["+44 7911 123456", "07700 900123", "020 7946 0018", "12"]))
    def visitor_leaves_a_number(self, phone: str) -> None:
        # The widget's Team busy form belongs to the visitor's newest conversation with a handoff.
        target = Conversation.objects.filter(visitor=self.visitor, handoff__isnull=False).order_by("-created_at")
        conversation = target.first()
        if conversation is not None:
            self._try(
                lead_capture,
                visitor=self.visitor,
                conversation_public_id=str(conversation.public_id),
                phone=phone,
                locale="en-GB",
            )

    @rule(pick=st.integers(0, 7), resend=st.booleans())
    def visitor_continues_with_ai(self, pick: int, resend: bool) -> None:
        conversation: Conversation | None = _pick(self._conversations(), pick)
        if conversation is None:
            return
        before = Handoff.objects.filter(conversation=conversation).values_list("status", flat=True).first()
        client_id = uuid.uuid4().hex
        result = self._try(
            handoff_continue_with_ai,
            visitor=self.visitor,
            conversation_public_id=str(conversation.public_id),
            client_id=client_id,
        )
        if before == Handoff.Status.ACTIVE:
            # An agent is live there: the visitor stays with them, nothing is switched.
            assert result is not None and result.pk == conversation.pk
        elif before == Handoff.Status.BUSY:
            assert result is not None and result.pk != conversation.pk and result.status == "open"
            if resend:
                again = handoff_continue_with_ai(
                    visitor=self.visitor, conversation_public_id=str(conversation.public_id), client_id=client_id
                )
                assert again.pk == result.pk
        else:
            assert result is None

    @rule()
    def visitor_starts_a_new_conversation(self) -> None:
        live = Handoff.objects.filter(conversation__visitor=self.visitor, status=Handoff.Status.ACTIVE).exists()
        fresh = self._try(conversation_start_new, visitor=self.visitor)
        assert (fresh is None) == live
        if fresh is not None:
            assert self._current().pk == fresh.pk

    # --- agents and time -------------------------------------------------------------------

    @rule(agent=st.integers(0, 1), pick=st.integers(0, 7))
    def agent_claims(self, agent: int, pick: int) -> None:
        handoff: Handoff | None = _pick(self._handoffs(), pick)
        if handoff is not None:
            self._try(
                handoff_claim, agent=self.agents[agent], conversation_public_id=str(handoff.conversation.public_id)
            )

    @rule(pick=st.integers(0, 7), then=st.sampled_from(["stays", "removed", "deactivated"]))
    def second_agent_claims(self, pick: int, then: str) -> None:
        """The agent who may leave claims too — and may then leave at once, while the chat is live
        (by chance alone a leave rarely meets a live chat of theirs)."""
        self.agent_claims(1, pick)
        live = Handoff.objects.filter(chatbot=self.bot, status=Handoff.Status.ACTIVE, claimed_by=self.agents[1])
        if then != "stays" and live.exists():
            self.second_agent_leaves(then)

    @rule(agent=st.integers(0, 1), pick=st.integers(0, 7))
    def agent_replies(self, agent: int, pick: int) -> None:
        handoff: Handoff | None = _pick(self._handoffs(), pick)
        if handoff is None:
            return
        result = self._try(
            handoff_reply,
            agent=self.agents[agent],
            conversation_public_id=str(handoff.conversation.public_id),
            text="agent here",
            client_id=uuid.uuid4().hex,
        )
        if result is not None:
            self.replies_by.setdefault(handoff.pk, set()).add(self.agents[agent].pk)

    @rule(agent=st.integers(0, 1), pick=st.integers(0, 7))
    def agent_resolves(self, agent: int, pick: int) -> None:
        handoff: Handoff | None = _pick(self._handoffs(), pick)
        if handoff is not None:
            self._try(
                handoff_resolve, agent=self.agents[agent], conversation_public_id=str(handoff.conversation.public_id)
            )

    @rule(seconds=st.sampled_from([1, 60, 200]))
    def time_passes(self, seconds: int) -> None:
        self.clock += timedelta(seconds=seconds)
        handoff_expire_overdue(now=self.clock)
        handoff_offers_expire(now=self.clock)

    @rule()
    def a_live_chat_falls_silent(self) -> None:
        """Past the idle limit: the idle sweep resolves every live chat nobody wrote in since."""
        self.clock += IDLE
        handoff_expire_overdue(now=self.clock)
        handoff_offers_expire(now=self.clock)
        handoff_idle_sweep(now=self.clock)

    @rule(agent=st.integers(0, 1), pick=st.integers(0, 7))
    def agent_releases(self, agent: int, pick: int) -> None:
        handoff: Handoff | None = _pick(self._handoffs(), pick)
        if handoff is not None:
            self._try(
                handoff_release, agent=self.agents[agent], conversation_public_id=str(handoff.conversation.public_id)
            )

    @rule(agent=st.integers(0, 1), pick=st.integers(0, 7))
    def agent_transfers_to_the_other(self, agent: int, pick: int) -> None:
        handoff: Handoff | None = _pick(self._handoffs(), pick)
        if handoff is not None:
            self._try(
                handoff_transfer,
                agent=self.agents[agent],
                conversation_public_id=str(handoff.conversation.public_id),
                to_user_id=self.agents[1 - agent].pk,
            )

    @rule(agent=st.integers(0, 1), pick=st.integers(0, 7))
    def agent_declines_an_offer(self, agent: int, pick: int) -> None:
        handoff: Handoff | None = _pick(self._handoffs(), pick)
        if handoff is not None:
            self._try(
                handoff_offer_decline,
                agent=self.agents[agent],
                conversation_public_id=str(handoff.conversation.public_id),
            )

    @rule(pick=st.integers(0, 7))
    def owner_takes_over(self, pick: int) -> None:
        handoff: Handoff | None = _pick(self._handoffs(), pick)
        if handoff is not None:
            self._try(
                handoff_take_over, agent=self.agents[0], conversation_public_id=str(handoff.conversation.public_id)
            )

    @rule(how=st.sampled_from(["removed", "deactivated"]))
    def second_agent_leaves(self, how: str) -> None:
        agent = self.agents[1]
        if how == "removed":
            Membership.objects.filter(workspace=self.workspace, user=agent).delete()
        else:
            agent.is_active = False
            agent.save()

    @rule()
    def second_agent_returns(self) -> None:
        agent = self.agents[1]
        if not agent.is_active:
            agent.is_active = True
            agent.save()
        if not Membership.objects.filter(workspace=self.workspace, user=agent).exists():
            membership_add(workspace=self.workspace, user=agent, role=Membership.Role.AGENT)

    # --- invariants ------------------------------------------------------------------------

    @invariant()
    def every_invariant_holds(self) -> None:
        conversations = {c.pk: c for c in Conversation.objects.filter(visitor=self.visitor)}
        events: dict[int, list[Event]] = {pk: [] for pk in conversations}
        # By conversation id (the event table's own index): every example's rows stay in the test's one
        # transaction, so a join the planner reads by sequential scan grows slower with each example.
        for event in Event.objects.filter(conversation_id__in=list(conversations)).order_by("conversation_id", "pk"):
            events[event.conversation_id].append(event)
        handoffs = {h.conversation_id: h for h in Handoff.objects.filter(chatbot=self.bot)}

        for pk, conversation in conversations.items():
            log = events[pk]
            # seq: strictly increasing in insertion order, without gaps, matching last_seq.
            assert [e.seq for e in log] == list(range(1, len(log) + 1))
            assert conversation.last_seq == len(log)
            kinds = [e.kind for e in log]
            handoff = handoffs.get(pk)
            if handoff is None:
                assert "handoff.requested" not in kinds
                assert conversation.status == "open"
                continue
            # One request per conversation, and no AI text after it (including a reply in flight).
            assert kinds.count("handoff.requested") == 1
            requested = log[kinds.index("handoff.requested")].seq
            assert not [e for e in log if e.author == Event.Author.AI and e.seq > requested]
            # The handoff's events replay, each legal where it stands, to the handoff's state; an
            # agent message comes only from the agent holding the live chat at that point.
            status, holder = "pending", None
            for event in log[kinds.index("handoff.requested") + 1 :]:
                if event.author == Event.Author.AGENT:
                    assert status == "active" and event.agent_id == holder, (event.seq, kinds)
                if event.kind not in TRANSITIONS:
                    continue
                before, after = TRANSITIONS[event.kind]
                assert status in before, (event.kind, status, kinds)
                status = after or status
                holder = event.agent_id if event.kind in ("handoff.claimed", "handoff.taken_over") else holder
            assert status == handoff.status, (status, handoff.status, kinds)
            if status == "active":
                assert holder == handoff.claimed_by_id
            agent_messages = [e for e in log if e.author == Event.Author.AGENT]
            assert self.replies_by.get(handoff.pk, set()) <= {e.agent_id for e in agent_messages}
            resolved = [e for e in log if e.kind == "handoff.resolved"]
            assert len(resolved) <= 1
            # The conversation follows its handoff, and the resolve records why.
            assert conversation.status == ("closed" if handoff.status == "resolved" else "handoff")
            assert bool(resolved) == (handoff.status == "resolved")
            if resolved:
                assert handoff.resolve_reason == resolved[0].data.get("reason", "agent")
        # Nobody stranded: every live handoff's agent is an active member of the workspace.
        assert not stranded_handoffs().filter(chatbot=self.bot).exists()

        # Exactly one conversation.escalated per handoff, matching it, and none for anything else.
        escalations = [
            e.payload["data"]
            for e in OutboxEvent.objects.filter(
                workspace_id=self.workspace.pk, type="conversation.escalated", chatbot_id=self.bot.pk
            )
        ]
        per_conversation = Counter(data["conversation"]["id"] for data in escalations)
        expected = {str(conversations[pk].public_id): h for pk, h in handoffs.items()}
        assert set(per_conversation) == set(expected)
        assert set(per_conversation.values()) <= {1}
        for data in escalations:
            handoff = expected[data["conversation"]["id"]]
            assert data["handoff"]["requested_at"] == handoff.requested_at.isoformat()
            assert data["handoff"]["trigger"] == handoff.trigger


@pytest.mark.django_db
def test_the_handoff_state_machine_keeps_its_invariants(monkeypatch: pytest.MonkeyPatch) -> None:
    # Every active member counts as Online (presence has its own tests): requests wait in the queue
    # rather than skipping to Team busy, and a transfer finds its colleague.
    def members_online(*, workspace_id: int) -> set[int]:
        members = Membership.objects.filter(workspace_id=workspace_id, user__is_active=True)
        return set(members.values_list("user_id", flat=True))

    monkeypatch.setattr(request_module, "online_agent_ids", members_online)
    monkeypatch.setattr(transfer_module, "online_agent_ids", members_online)
    run_state_machine_as_test(
        HandoffMachine,
        settings=settings(
            max_examples=100,
            stateful_step_count=30,
            deadline=None,
            suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
        ),
    )
