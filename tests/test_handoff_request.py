"""A visitor's request for a person: by button, by keyword offer, superseding an older one; the AI
stays silent once a person is requested."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest

from chatbots.services import subscription_set
from conversations.ai import conversation_reply_with_ai
from conversations.models import Event
from handoff.models import Handoff
from handoff.transitions.continue_ai import handoff_continue_with_ai
from handoff.transitions.request import handoff_offer_answer
from handoff.transitions.timers import handoff_expire
from pivra.errors import Forbidden
from pivra.realtime import visitor_group
from tests.channel_helpers import frames_heard
from tests.handoff_helpers import event_kinds, new_visitor, outbox_events, request, say

pytestmark = pytest.mark.django_db


def test_a_button_request_makes_the_conversation_pending_and_records_everything(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    conversation.refresh_from_db()
    assert handoff.status == "pending" and handoff.trigger == "button"
    assert conversation.status == "handoff"
    assert event_kinds(conversation) == ["handoff.requested"]
    assert conversation.events.get().text == "Connecting you with the team now…"
    (escalated,) = outbox_events("conversation.escalated")
    assert escalated.payload["data"]["handoff"]["trigger"] == "button"
    assert escalated.payload["data"]["conversation"]["id"] == str(conversation.public_id)
    assert escalated.payload["version"] == 1
    assert (handoff.deadline_at - handoff.requested_at) == timedelta(seconds=180)


def test_a_second_request_returns_the_same_handoff_and_escalates_once(bot) -> None:
    visitor, conversation = new_visitor(bot)
    first = request(visitor, conversation)
    second = request(visitor, conversation)
    assert first.pk == second.pk
    assert len(outbox_events("conversation.escalated")) == 1


def test_the_free_plan_refuses_a_request(bot, personas) -> None:
    subscription_set(workspace=personas.workspace, plan_code="free")
    visitor, conversation = new_visitor(bot)
    with pytest.raises(Forbidden) as error:
        request(visitor, conversation)
    assert error.value.code == "handoff_unavailable"
    assert not Handoff.objects.exists()


def test_a_disabled_chatbot_refuses_a_request(personas) -> None:
    visitor, conversation = new_visitor(personas.chatbot)
    with pytest.raises(Forbidden):
        request(visitor, conversation)


def test_visitor_messages_during_handoff_are_saved_and_the_ai_stays_silent(
    bot, django_capture_on_commit_callbacks
) -> None:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    with django_capture_on_commit_callbacks() as callbacks:
        received = say(visitor, conversation, "Hello? Anyone there?")
    assert received.event.author == "visitor"
    # Only broadcasts were queued: no AI task.
    assert all("generate_ai_reply" not in repr(cb) for cb in callbacks)
    assert conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=received.event.seq) is None
    assert not Event.objects.filter(conversation=conversation, author="ai").exists()


class _SlowResponder:
    """Streams a reply; a person is requested while it is still being generated."""

    def __init__(self, on_chunk: Any) -> None:
        self.on_chunk = on_chunk

    def stream(self, *, question: str, history: Any) -> Iterator[str]:
        yield "Our shipping "
        self.on_chunk()
        yield "is free over $75."


def test_an_ai_reply_generated_across_a_request_is_never_saved(
    bot, monkeypatch, django_capture_on_commit_callbacks
) -> None:
    visitor, conversation = new_visitor(bot)
    received = say(visitor, conversation, "How much is shipping?")

    def request_and_commit() -> None:
        # The test runs in one transaction: run the request's after-commit work as its commit would.
        with django_capture_on_commit_callbacks(execute=True):
            request(visitor, conversation)

    monkeypatch.setattr("conversations.ai.responder_for", lambda chatbot: _SlowResponder(request_and_commit))
    replies: list[Any] = []
    frames = frames_heard(  # at the production status-check interval
        visitor_group(visitor.public_id),
        lambda: replies.append(
            conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=received.event.seq)
        ),
    )
    assert replies == [None]
    assert not Event.objects.filter(conversation=conversation, author="ai").exists()
    requested_at = next(i for i, f in enumerate(frames) if f["type"] == "state")
    assert [f["text"] for f in frames if f["type"] == "ai.delta"] == ["Our shipping "]
    assert not [f for f in frames[requested_at:] if f["type"] == "ai.delta"]  # nothing sent after the request


def test_an_ai_reply_is_saved_once_even_if_the_task_runs_twice(bot, monkeypatch) -> None:
    visitor, conversation = new_visitor(bot)
    received = say(visitor, conversation, "How much is shipping?")
    monkeypatch.setattr("conversations.ai.responder_for", lambda chatbot: _SlowResponder(lambda: None))
    first = conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=received.event.seq)
    again = conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=received.event.seq)
    assert first is not None and first.text == "Our shipping is free over $75."
    assert again is None
    assert Event.objects.filter(conversation=conversation, author="ai").count() == 1


def test_a_keyword_offers_a_person_and_yes_requests_one(bot) -> None:
    visitor, conversation = new_visitor(bot)
    received = say(visitor, conversation, "Can I SPEAK to   someone, please?")
    offer = conversation.events.order_by("seq").last()
    assert offer is not None and offer.kind == "handoff.offer"
    assert offer.text == "Would you like to speak with a team member?"
    assert offer.data["options"] == ["Yes, connect me", "No thanks"]
    assert offer.data["reply_to"] == received.event.seq
    answer = handoff_offer_answer(
        visitor=visitor,
        conversation_public_id=str(conversation.public_id),
        offer_seq=offer.seq,
        accept=True,
        client_id="yes-1",
    )
    assert answer.handoff is not None and answer.handoff.trigger == "keyword"
    again = handoff_offer_answer(
        visitor=visitor,
        conversation_public_id=str(conversation.public_id),
        offer_seq=offer.seq,
        accept=True,
        client_id="yes-1",
    )
    assert again.event.pk == answer.event.pk


def test_no_thanks_lets_the_ai_answer_the_original_message(
    bot, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    queued: list[tuple[int, int]] = []
    monkeypatch.setattr("conversations.tasks.generate_ai_reply.delay", lambda c, s: queued.append((c, s)))
    visitor, conversation = new_visitor(bot)
    received = say(visitor, conversation, "talk to real person")
    offer = conversation.events.order_by("seq").last()
    assert offer is not None
    with django_capture_on_commit_callbacks(execute=True):
        handoff_offer_answer(
            visitor=visitor,
            conversation_public_id=str(conversation.public_id),
            offer_seq=offer.seq,
            accept=False,
            client_id="no-1",
        )
    assert queued == [(conversation.pk, received.event.seq)]
    conversation.refresh_from_db()
    assert conversation.status == "open"


def test_a_newer_request_supersedes_the_older_one_with_a_full_resolve_record(bot) -> None:
    visitor, conversation = new_visitor(bot)
    old = request(visitor, conversation)
    handoff_expire(handoff_id=old.pk, now=old.deadline_at)
    fresh = handoff_continue_with_ai(visitor=visitor, conversation_public_id=str(conversation.public_id))
    request(visitor, fresh)
    old.refresh_from_db()
    conversation.refresh_from_db()
    assert old.status == "resolved" and old.resolved_at is not None and old.resolved_by is None
    assert conversation.status == "closed" and conversation.closed_at == old.resolved_at
    last = conversation.events.order_by("seq").last()
    assert last is not None and last.kind == "handoff.resolved" and last.data == {"reason": "superseded"}
    (resolved,) = outbox_events("handoff.resolved")
    assert resolved.payload["data"]["reason"] == "superseded"
    assert resolved.payload["data"]["conversation"]["status"] == "closed"
    assert resolved.payload["data"]["handoff"]["status"] == "resolved"
