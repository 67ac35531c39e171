"""Caps on the notifications visitors can trigger: at most PIVRA_NOTIFY_LIMIT escalation (and lead)
deliveries per chatbot and window; the rest become one digest when the window ends. The events
themselves — handoffs, outbox rows — are all kept. The clock is passed in; nothing sleeps."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from actions import caps, deliveries
from actions.caps import DIGEST_GRACE_SECONDS
from actions.deliveries import delivery_attempt, notification_digests_send, outbox_event_dispatch
from actions.events import DIGEST_TYPE
from actions.messages import event_email, slack_message, summarize
from actions.models import Delivery, OutboxEvent
from handoff.models import Handoff
from handoff.transitions.lead import lead_capture
from handoff.transitions.timers import handoff_expire
from tests.factories import Personas
from tests.test_actions_support import Receiver, escalate, webhook_action

pytestmark = pytest.mark.django_db
WINDOW_START = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)  # a 10-minute boundary
WINDOW_END = WINDOW_START + timedelta(minutes=10)


@pytest.fixture(autouse=True)
def _small_cap(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.NOTIFY_LIMIT = 3
    settings.NOTIFY_WINDOW_MINUTES = 10


def _dispatch_new(event_type: str, *, at: datetime) -> list[int]:
    ids: list[int] = []
    for event in OutboxEvent.objects.filter(type=event_type, dispatched_at__isnull=True):
        ids += outbox_event_dispatch(event_id=str(event.pk), now=at)
    return ids


def test_a_flood_of_escalations_sends_the_cap_then_one_digest(personas: Personas) -> None:
    with Receiver() as receiver:
        action = webhook_action(personas.chatbot, receiver.url)
        sent: list[int] = []
        for n in range(8):
            escalate(personas.chatbot)
            sent += _dispatch_new("conversation.escalated", at=WINDOW_START + timedelta(seconds=30 * n))
        assert len(sent) == 3
        # Every request is still a handoff for the team, and an event on record.
        assert Handoff.objects.filter(chatbot=personas.chatbot).count() == 8
        assert OutboxEvent.objects.filter(type="conversation.escalated", dispatched_at__isnull=False).count() == 8

        # Nothing is summed up before the window has ended.
        assert notification_digests_send(now=WINDOW_END - timedelta(seconds=1)) == []
        (digest_id,) = notification_digests_send(now=WINDOW_END + timedelta(seconds=DIGEST_GRACE_SECONDS))
        assert notification_digests_send(now=WINDOW_END + timedelta(minutes=1)) == []  # sent once

        attempt = delivery_attempt(delivery_id=digest_id)
        assert attempt is not None and attempt.outcome == "succeeded"
    digest = Delivery.objects.get(pk=digest_id)
    assert digest.action_id == action.pk and digest.event_type == DIGEST_TYPE and not digest.is_test
    payload = json.loads(receiver.hits[-1].body)
    assert payload["type"] == DIGEST_TYPE
    data = payload["data"]
    assert (data["event_type"], data["count"], data["limit"], data["window_minutes"]) == (
        "conversation.escalated",
        5,
        3,
        10,
    )
    assert data["window_start"] == WINDOW_START.isoformat() and data["window_end"] == WINDOW_END.isoformat()
    assert data["chatbot"] == {"id": personas.chatbot.pk, "name": personas.chatbot.name}
    assert data["url"].endswith(f"/dashboard/conversations/?tab=handoff&chatbot={personas.chatbot.pk}")

    # People read it as one message: "5 more handoff requests in the last 10 minutes".
    summary = summarize(payload)
    assert summary.title == "5 more handoff requests in the last 10 minutes"
    assert "at most 3 handoff requests one by one per 10 minutes" in summary.intro
    assert slack_message(summary)["text"].endswith("|Open the conversations>")
    email = event_email(summary=summary, recipients=["team@example.com"])
    assert email.subject == f"[{personas.chatbot.name}] 5 more handoff requests in the last 10 minutes"
    assert f"Open the conversations: {data['url']}" in str(email.body)


def test_the_next_window_starts_afresh_and_other_chatbots_are_not_affected(personas: Personas) -> None:
    with Receiver() as receiver:
        webhook_action(personas.chatbot, receiver.url)
        webhook_action(personas.other_chatbot, receiver.url, name="other")
        for _ in range(4):
            escalate(personas.chatbot)
        escalate(personas.other_chatbot)
        assert len(_dispatch_new("conversation.escalated", at=WINDOW_START)) == 4  # 3 + the other chatbot's
        escalate(personas.chatbot)
        assert len(_dispatch_new("conversation.escalated", at=WINDOW_END + timedelta(seconds=1))) == 1
        (digest,) = notification_digests_send(now=WINDOW_END + timedelta(minutes=1))
        assert Delivery.objects.get(pk=digest).payload["data"]["count"] == 1


def test_leads_have_a_cap_of_their_own(personas: Personas) -> None:
    with Receiver() as receiver:
        webhook_action(personas.chatbot, receiver.url, events=["conversation.escalated", "lead.captured"])
        handoffs = [escalate(personas.chatbot) for _ in range(5)]
        assert len(_dispatch_new("conversation.escalated", at=WINDOW_START)) == 3
        for n, handoff in enumerate(handoffs):
            handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)
            conversation = handoff.conversation
            lead_capture(
                visitor=conversation.visitor,
                conversation_public_id=str(conversation.public_id),
                phone=f"+44791112345{n}",
            )
        assert len(_dispatch_new("lead.captured", at=WINDOW_START)) == 3
        assert len(_dispatch_new("handoff.timed_out", at=WINDOW_START)) == 0  # not subscribed, never capped
        digests = notification_digests_send(now=WINDOW_END + timedelta(minutes=1))
    kinds = sorted(
        (d.payload["data"]["event_type"], d.payload["data"]["count"]) for d in Delivery.objects.filter(pk__in=digests)
    )
    assert kinds == [("conversation.escalated", 2), ("lead.captured", 2)]
    lead_digest = next(
        d for d in Delivery.objects.filter(pk__in=digests) if d.payload["data"]["event_type"] == "lead.captured"
    )
    assert summarize(lead_digest.payload).title == "2 more leads in the last 10 minutes"


def test_events_nobody_is_told_about_do_not_count(personas: Personas) -> None:
    # Escalations before any action existed sent nothing: they do not eat the budget.
    for _ in range(5):
        escalate(personas.chatbot)
    with Receiver() as receiver:
        webhook_action(personas.chatbot, receiver.url)
        escalate(personas.chatbot)
        assert len(_dispatch_new("conversation.escalated", at=WINDOW_START)) == 1
    assert notification_digests_send(now=WINDOW_END + timedelta(minutes=1)) == []


def test_a_digest_that_fails_to_be_created_is_sent_on_the_next_run_exactly_once(
    personas: Personas, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    with Receiver() as receiver:
        webhook_action(personas.chatbot, receiver.url)
        for _ in range(5):
            escalate(personas.chatbot)
        assert len(_dispatch_new("conversation.escalated", at=WINDOW_START)) == 3
        due = WINDOW_END + timedelta(minutes=1)

        # The rows are written, then the transaction fails: nothing is stored, and nothing is lost.
        failures = ["the database went away mid-digest"]

        def enqueue(ids: list[int]) -> None:  # the test sends the attempt itself, below
            if failures:
                raise RuntimeError(failures.pop())

        monkeypatch.setattr(deliveries, "enqueue_attempts_on_commit", enqueue)
        with django_capture_on_commit_callbacks(execute=True):
            assert notification_digests_send(now=due) == []
        assert not Delivery.objects.filter(event_type=DIGEST_TYPE).exists()

        with django_capture_on_commit_callbacks(execute=True):
            (digest_id,) = notification_digests_send(now=due + timedelta(seconds=30))
        with django_capture_on_commit_callbacks(execute=True):
            assert notification_digests_send(now=due + timedelta(minutes=1)) == []
        attempt = delivery_attempt(delivery_id=digest_id)
        assert attempt is not None and attempt.outcome == "succeeded"
    assert Delivery.objects.filter(event_type=DIGEST_TYPE).count() == 1
    assert [json.loads(hit.body)["data"]["count"] for hit in receiver.hits if DIGEST_TYPE.encode() in hit.body] == [2]


def test_a_digest_committed_but_not_settled_is_not_sent_twice(
    personas: Personas, django_capture_on_commit_callbacks: Any
) -> None:
    # The worker died after the commit, before the window left the due set: when its lease runs
    # out the next run claims the window again and finds the digest already stored.
    with Receiver() as receiver:
        webhook_action(personas.chatbot, receiver.url)
        for _ in range(4):
            escalate(personas.chatbot)
        _dispatch_new("conversation.escalated", at=WINDOW_START)
    due = WINDOW_END + timedelta(minutes=1)
    (first,) = notification_digests_send(now=due)  # on-commit never runs inside the test's transaction
    assert notification_digests_send(now=due) == []  # leased to the first run
    window = caps.HeldBack(personas.chatbot.pk, "conversation.escalated", int(WINDOW_START.timestamp()) // 600, 1)
    caps._redis().delete(caps._claim_key(window.member))
    with django_capture_on_commit_callbacks(execute=True):
        assert notification_digests_send(now=due + timedelta(minutes=5)) == []  # the lease ran out: no second copy
    assert list(Delivery.objects.filter(event_type=DIGEST_TYPE).values_list("pk", flat=True)) == [first]
    assert caps._redis().zscore(caps._pending_key(), window.member) is None  # and the window is settled now
