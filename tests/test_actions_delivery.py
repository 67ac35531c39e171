"""Fan-out, signed delivery, retries, Retry-After, 410, redirects, SSRF at send time, takeover of a
lost attempt, the sweep, manual redelivery and secret rotation — against real loopback receivers.

Attempts are driven by calling the delivery service as the task would, with the clock moved by
time-machine; nothing sleeps."""

from __future__ import annotations

import json
import threading
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime
from typing import Any

import pytest
import time_machine
from django.db import close_old_connections, connection, transaction
from django.utils import timezone
from standardwebhooks import Webhook

from actions import deliveries as delivery_module
from actions.deliveries import (
    MAX_ATTEMPTS,
    RETRY_SCHEDULE,
    actions_sweep,
    delivery_attempt,
    delivery_redeliver,
    outbox_event_dispatch,
    retry_delay,
)
from actions.models import Action, Delivery, DeliveryAttempt, OutboxEvent
from actions.services import action_notify_paused, action_pause, action_rotate_secret
from actions.transports import parse_retry_after
from chatbots.services import subscription_set
from pivra.errors import Conflict
from tests.factories import Personas
from tests.test_actions_support import Receiver, Reply, escalate, escalate_and_dispatch, webhook_action

START = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)


@pytest.fixture(autouse=True)
def _allow_loopback(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True


def _verify(secret: str, hit: Any) -> dict[str, Any]:
    return Webhook(secret).verify(hit.body, hit.headers)


@pytest.mark.django_db(transaction=True)
def test_an_escalation_makes_exactly_one_signed_delivery(personas: Personas) -> None:
    with Receiver() as receiver:
        action = webhook_action(personas.chatbot, receiver.url)
        handoff = escalate(personas.chatbot)
        (event,) = OutboxEvent.objects.all()
        ids = outbox_event_dispatch(event_id=str(event.pk))
        assert outbox_event_dispatch(event_id=str(event.pk)) == []  # a second dispatch is a no-op
        (delivery_id,) = ids
        attempt = delivery_attempt(delivery_id=delivery_id)
        assert attempt is not None and attempt.outcome == "succeeded"
        assert delivery_attempt(delivery_id=delivery_id) is None  # nothing left to send
    (hit,) = receiver.hits
    payload = _verify(action.secret, hit)
    assert hit.headers["webhook-id"] == f"msg_{event.pk.hex}"
    assert hit.headers["content-type"] == "application/json"
    assert payload["type"] == "conversation.escalated"
    assert payload["version"] == 1
    assert payload["id"] == str(event.pk)
    data = payload["data"]
    assert data["handoff"]["trigger"] == "button"
    assert data["conversation"]["id"] == str(handoff.conversation.public_id)
    assert data["conversation"]["url"].endswith(f"/dashboard/conversations/{handoff.conversation.public_id}/")
    assert data["chatbot"] == {"id": personas.chatbot.pk, "name": personas.chatbot.name}
    assert data["visitor"]["current_page"] == "https://shop.example.com/pricing"
    delivery = Delivery.objects.get()
    assert delivery.status == "succeeded" and delivery.attempts == 1 and delivery.last_status_code == 200


@pytest.mark.django_db(transaction=True)
def test_a_rolled_back_escalation_sends_nothing(personas: Personas) -> None:
    with Receiver() as receiver:
        webhook_action(personas.chatbot, receiver.url)
        with pytest.raises(RuntimeError), transaction.atomic():
            escalate(personas.chatbot)
            raise RuntimeError("the request failed after the handoff was written")
        assert OutboxEvent.objects.count() == 0
        with time_machine.travel(timezone.now() + timedelta(minutes=5)):
            assert actions_sweep() == {"dispatched": 0, "failed_lost": 0, "requeued": 0, "paused": 0}
    assert Delivery.objects.count() == 0
    assert receiver.hits == []


@pytest.mark.django_db
def test_a_receiver_failing_twice_gets_the_third_attempt_with_the_same_id(personas: Personas) -> None:
    with (
        Receiver(Reply(500, body=b"boom"), Reply(500)) as receiver,
        time_machine.travel(START, tick=True) as clock,
    ):
        action = webhook_action(personas.chatbot, receiver.url)
        (delivery,) = escalate_and_dispatch(personas.chatbot)
        first = delivery_attempt(delivery_id=delivery.pk)
        assert first is not None and first.outcome == "failed" and first.status_code == 500
        delivery.refresh_from_db()
        assert delivery.status == "pending"
        assert delivery.next_attempt_at is not None and first.finished_at is not None
        wait = (delivery.next_attempt_at - first.finished_at).total_seconds()
        assert RETRY_SCHEDULE[0] * 0.8 <= wait <= RETRY_SCHEDULE[0] * 1.2
        assert delivery_attempt(delivery_id=delivery.pk) is None  # not due yet: nothing is sent
        clock.shift(timedelta(seconds=40))
        second = delivery_attempt(delivery_id=delivery.pk)
        assert second is not None and second.outcome == "failed"
        delivery.refresh_from_db()
        assert second.next_retry_at == delivery.next_attempt_at
        clock.shift(timedelta(seconds=RETRY_SCHEDULE[1] * 1.2 + 1))
        third = delivery_attempt(delivery_id=delivery.pk)
        assert third is not None and third.outcome == "succeeded"
        ids = {hit.headers["webhook-id"] for hit in receiver.hits}
        bodies = {hit.body for hit in receiver.hits}
        for hit in receiver.hits:
            _verify(action.secret, hit)
    assert len(receiver.hits) == 3 and len(ids) == 1 and len(bodies) == 1
    delivery.refresh_from_db()
    assert (delivery.status, delivery.attempts) == ("succeeded", 3)
    assert list(delivery.attempt_log.values_list("number", "outcome", "status_code")) == [
        (1, "failed", 500),
        (2, "failed", 500),
        (3, "succeeded", 200),
    ]
    assert delivery.attempt_log.get(number=1).response_excerpt == "boom"
    action.refresh_from_db()
    assert action.failing_since is None and action.last_success_at is not None


def test_the_backoff_grows_to_about_a_day_with_jitter() -> None:
    assert len(RETRY_SCHEDULE) + 1 == MAX_ATTEMPTS
    assert timedelta(hours=18) < timedelta(seconds=sum(RETRY_SCHEDULE)) < timedelta(hours=26)
    assert list(RETRY_SCHEDULE) == sorted(RETRY_SCHEDULE)
    delays = {round(retry_delay(attempt=1), 3) for _ in range(20)}
    assert len(delays) > 1 and all(24 <= d <= 36 for d in delays)
    assert retry_delay(attempt=1, retry_after=900) == 900
    assert retry_delay(attempt=99) <= RETRY_SCHEDULE[-1] * 1.2


@pytest.mark.django_db
def test_retry_after_is_honoured(personas: Personas) -> None:
    with Receiver(Reply(429, {"Retry-After": "3600"}), Reply(503, {"Retry-After": "0"})) as receiver:
        webhook_action(personas.chatbot, receiver.url)
        (delivery,) = escalate_and_dispatch(personas.chatbot)
        attempt = delivery_attempt(delivery_id=delivery.pk)
        assert attempt is not None
        delivery.refresh_from_db()
        assert delivery.next_attempt_at is not None and attempt.finished_at is not None
        assert (delivery.next_attempt_at - attempt.finished_at) >= timedelta(seconds=3600)
        assert delivery.last_error == "HTTP 429"


def test_retry_after_accepts_seconds_and_http_dates() -> None:
    now = datetime(2026, 3, 6, 9, 0, tzinfo=UTC)
    assert parse_retry_after("120", now=now) == 120
    assert parse_retry_after(format_datetime(now + timedelta(minutes=10), usegmt=True), now=now) == 600
    assert parse_retry_after("10000000", now=now) == 86_400  # capped at a day
    assert parse_retry_after("soon", now=now) is None
    assert parse_retry_after(None) is None


@pytest.mark.django_db
def test_a_410_pauses_the_action_and_stops_retrying(personas: Personas, django_capture_on_commit_callbacks) -> None:
    with Receiver(Reply(410)) as receiver:
        action = webhook_action(personas.chatbot, receiver.url)
        (delivery,) = escalate_and_dispatch(personas.chatbot)
        (queued,) = escalate_and_dispatch(personas.chatbot)
        with django_capture_on_commit_callbacks() as callbacks:
            attempt = delivery_attempt(delivery_id=delivery.pk)
    assert attempt is not None and attempt.status_code == 410
    delivery.refresh_from_db()
    queued.refresh_from_db()
    action.refresh_from_db()
    assert delivery.status == "failed" and delivery.next_attempt_at is None
    assert action.status == "paused" and "410" in action.paused_reason
    assert queued.status == "failed" and "paused" in queued.last_error  # nothing more goes out
    assert len(callbacks) == 1  # the owners' notification, queued after commit
    assert delivery_attempt(delivery_id=queued.pk) is None
    assert len(receiver.hits) == 1


@pytest.mark.django_db
def test_a_redirect_is_a_failure_and_is_not_followed(personas: Personas) -> None:
    with Receiver(Reply(301, {"Location": "http://127.0.0.1:1/elsewhere"}, b"")) as receiver:
        webhook_action(personas.chatbot, receiver.url)
        (delivery,) = escalate_and_dispatch(personas.chatbot)
        attempt = delivery_attempt(delivery_id=delivery.pk)
    assert attempt is not None and attempt.outcome == "failed" and attempt.status_code == 301
    assert "not followed" in attempt.error
    assert [hit.path for hit in receiver.hits] == ["/hook"]
    delivery.refresh_from_db()
    assert delivery.status == "pending"  # retried later like any failure


@pytest.mark.django_db
def test_loopback_is_refused_at_send_time_when_private_addresses_are_not_allowed(
    personas: Personas, settings: Any
) -> None:
    with Receiver() as receiver:
        webhook_action(personas.chatbot, receiver.url)  # saved while allowed (as in development)
        settings.WEBHOOK_ALLOW_PRIVATE = False
        (delivery,) = escalate_and_dispatch(personas.chatbot)
        attempt = delivery_attempt(delivery_id=delivery.pk)
    assert receiver.hits == []
    assert attempt is not None and attempt.outcome == "failed"
    assert attempt.error == "destination not allowed"
    delivery.refresh_from_db()
    assert delivery.last_error == "destination not allowed" and delivery.status == "pending"


@pytest.mark.django_db
def test_an_action_failing_for_a_day_is_paused_and_its_owners_told(personas: Personas, mailoutbox: list) -> None:
    with Receiver(*[Reply(500)] * 10) as receiver, time_machine.travel(START, tick=True) as clock:
        action = webhook_action(personas.chatbot, receiver.url)
        (first,) = escalate_and_dispatch(personas.chatbot)
        delivery_attempt(delivery_id=first.pk)
        action.refresh_from_db()
        assert action.failing_since is not None and action.status == "active"
        clock.shift(timedelta(hours=24, minutes=1))
        (later,) = escalate_and_dispatch(personas.chatbot)
        delivery_attempt(delivery_id=later.pk)
        action.refresh_from_db()
        assert action.status == "paused"
        assert "24 hours" in action.paused_reason
        assert action_notify_paused(action_id=action.pk) == 1
    (mail,) = mailoutbox
    assert mail.to == [personas.owner.email]
    assert "Action paused: CRM" in mail.subject
    assert f"/dashboard/actions/{action.pk}/" in mail.body


@pytest.mark.django_db
def test_the_sweep_pauses_an_action_whose_only_delivery_failed_for_a_day_and_mails_once(
    personas: Personas, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any, mailoutbox: list
) -> None:
    # Without jitter the last retry lands at exactly 20.7 hours: only the sweep can see the day.
    monkeypatch.setattr(delivery_module, "JITTER", 0.0)
    with Receiver(*[Reply(500)] * MAX_ATTEMPTS) as receiver, time_machine.travel(START, tick=False) as clock:
        action = webhook_action(personas.chatbot, receiver.url)
        (delivery,) = escalate_and_dispatch(personas.chatbot)
        while delivery.status != "failed":
            assert delivery_attempt(delivery_id=delivery.pk) is not None
            delivery.refresh_from_db()
            if delivery.next_attempt_at is not None:
                clock.move_to(delivery.next_attempt_at)
        assert len(receiver.hits) == MAX_ATTEMPTS
        action.refresh_from_db()
        assert action.status == "active" and action.failing_since is not None  # no attempt left to notice
        assert actions_sweep()["paused"] == 0  # not yet a day
        clock.move_to(START + timedelta(hours=24, minutes=1))
        with django_capture_on_commit_callbacks() as callbacks:
            assert actions_sweep()["paused"] == 1
        action.refresh_from_db()
        assert action.status == "paused" and "24 hours" in action.paused_reason
        assert len(callbacks) == 1  # the owners' email, queued once
        clock.move_to(START + timedelta(hours=30))
        with django_capture_on_commit_callbacks() as again:
            assert actions_sweep()["paused"] == 0
        assert again == []
        assert action_notify_paused(action_id=action.pk) == 1
    (mail,) = mailoutbox
    assert mail.to == [personas.owner.email] and "Action paused: CRM" in mail.subject


@pytest.mark.django_db
def test_a_worker_that_died_mid_attempt_is_taken_over_with_the_same_id(personas: Personas) -> None:
    with Receiver() as receiver, time_machine.travel(START, tick=True) as clock:
        action = webhook_action(personas.chatbot, receiver.url)
        (delivery,) = escalate_and_dispatch(personas.chatbot)
        claimed = delivery_module._claim(delivery.pk)  # a worker claims, then dies before sending
        assert claimed is not None
        assert delivery_attempt(delivery_id=delivery.pk) is None  # the lease still holds
        clock.shift(delivery_module.lease_duration() + timedelta(seconds=1))
        assert actions_sweep()["requeued"] == 1
        attempt = delivery_attempt(delivery_id=delivery.pk)
        assert attempt is not None and attempt.outcome == "succeeded"
        (hit,) = receiver.hits
        _verify(action.secret, hit)
    assert hit.headers["webhook-id"] == delivery.webhook_id
    assert list(DeliveryAttempt.objects.order_by("number").values_list("number", "outcome")) == [
        (1, "interrupted"),
        (2, "succeeded"),
    ]


@pytest.mark.django_db(transaction=True)
def test_concurrent_workers_send_one_attempt_once(personas: Personas) -> None:
    with Receiver() as receiver:
        webhook_action(personas.chatbot, receiver.url)
        (delivery,) = escalate_and_dispatch(personas.chatbot)
        barrier = threading.Barrier(4)
        results: list[object] = []

        def worker() -> None:
            try:
                barrier.wait()
                results.append(delivery_attempt(delivery_id=delivery.pk))
            finally:
                connection.close()

        threads = [threading.Thread(target=worker) for _ in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(30)
    close_old_connections()
    assert len([r for r in results if r is not None]) == 1
    assert len(receiver.hits) == 1


@pytest.mark.django_db
def test_the_sweep_dispatches_an_outbox_row_whose_task_was_lost(personas: Personas) -> None:
    with Receiver() as receiver:
        webhook_action(personas.chatbot, receiver.url)
        escalate(personas.chatbot)
        assert actions_sweep()["dispatched"] == 0  # still young: its on-commit task has the first go
        with time_machine.travel(timezone.now() + timedelta(seconds=5)):
            assert actions_sweep()["dispatched"] == 1
            (delivery,) = Delivery.objects.all()
            assert delivery_attempt(delivery_id=delivery.pk) is not None
    assert len(receiver.hits) == 1
    assert OutboxEvent.objects.get().dispatched_at is not None


@pytest.mark.django_db
def test_a_manual_redelivery_sends_again_with_the_same_id(personas: Personas) -> None:
    with Receiver(Reply(500)) as receiver:
        webhook_action(personas.chatbot, receiver.url)
        (delivery,) = escalate_and_dispatch(personas.chatbot)
        delivery_attempt(delivery_id=delivery.pk)
        Delivery.objects.filter(pk=delivery.pk).update(status="failed", next_attempt_at=None)
        delivery.refresh_from_db()
        delivery_redeliver(delivery=delivery)
        attempt = delivery_attempt(delivery_id=delivery.pk)
        assert attempt is not None and attempt.outcome == "succeeded" and attempt.number == 2
        delivery.refresh_from_db()
        assert (delivery.status, delivery.max_attempts) == ("succeeded", 2)
        delivery_redeliver(delivery=delivery)  # a delivered one can be sent again too
        assert delivery_attempt(delivery_id=delivery.pk) is not None
    assert len({h.headers["webhook-id"] for h in receiver.hits}) == 1 and len(receiver.hits) == 3


@pytest.mark.django_db
def test_a_paused_action_sends_nothing_and_refuses_redelivery(personas: Personas) -> None:
    with Receiver() as receiver:
        action = webhook_action(personas.chatbot, receiver.url)
        (delivery,) = escalate_and_dispatch(personas.chatbot)
        assert action_pause(action=action, reason="Paused by owner.")
        assert delivery_attempt(delivery_id=delivery.pk) is None
        delivery.refresh_from_db()
        assert delivery.status == "failed"
        with pytest.raises(Conflict):
            delivery_redeliver(delivery=delivery)
        assert escalate_and_dispatch(personas.chatbot) == []  # no new deliveries while paused
    assert receiver.hits == []


@pytest.mark.django_db
def test_only_subscribed_active_actions_of_that_chatbot_on_a_paid_plan_get_deliveries(personas: Personas) -> None:
    with Receiver() as receiver:
        webhook_action(personas.chatbot, receiver.url, name="escalations")
        webhook_action(personas.chatbot, receiver.url, events=["handoff.resolved"], name="resolved only")
        webhook_action(personas.other_chatbot, receiver.url, name="other workspace")
        assert [d.action.name for d in escalate_and_dispatch(personas.chatbot)] == ["escalations"]
        escalate(personas.chatbot)
        subscription_set(workspace=personas.workspace, plan_code="free")  # the plan lapses before dispatch
        event = OutboxEvent.objects.filter(dispatched_at__isnull=True).get()
        assert outbox_event_dispatch(event_id=str(event.pk)) == []


@pytest.mark.django_db
def test_during_a_rotation_both_secrets_sign_for_a_day(personas: Personas) -> None:
    with Receiver() as receiver, time_machine.travel(START, tick=True) as clock:
        action = webhook_action(personas.chatbot, receiver.url)
        old = action.secret
        new = action_rotate_secret(action=action)
        assert new != old and new.startswith("whsec_")
        (first,) = escalate_and_dispatch(personas.chatbot)
        delivery_attempt(delivery_id=first.pk)
        hit = receiver.hits[-1]
        assert len(hit.headers["webhook-signature"].split(" ")) == 2
        _verify(new, hit)
        _verify(old, hit)  # a receiver that has not switched yet keeps working
        clock.shift(timedelta(hours=24, seconds=1))
        (second,) = escalate_and_dispatch(personas.chatbot)
        delivery_attempt(delivery_id=second.pk)
        hit = receiver.hits[-1]
        assert len(hit.headers["webhook-signature"].split(" ")) == 1
        _verify(new, hit)
        with pytest.raises(Exception, match="No matching signature"):
            _verify(old, hit)


@pytest.mark.django_db
def test_every_event_of_the_catalogue_reaches_a_subscriber(personas: Personas) -> None:
    from handoff.transitions.claim import handoff_claim
    from handoff.transitions.lead import lead_capture
    from handoff.transitions.resolve import handoff_resolve
    from handoff.transitions.timers import handoff_expire

    with Receiver() as receiver:
        webhook_action(
            personas.chatbot,
            receiver.url,
            events=[
                "conversation.escalated",
                "handoff.timed_out",
                "lead.captured",
                "handoff.claimed",
                "handoff.resolved",
            ],
        )
        handoff = escalate(personas.chatbot)
        conversation = handoff.conversation
        handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)
        lead_capture(
            visitor=conversation.visitor, conversation_public_id=str(conversation.public_id), phone="+447911123456"
        )
        handoff_claim(agent=personas.owner, conversation_public_id=str(conversation.public_id))
        handoff_resolve(agent=personas.owner, conversation_public_id=str(conversation.public_id))
        for event in OutboxEvent.objects.order_by("created_at"):
            for delivery_id in outbox_event_dispatch(event_id=str(event.pk)):
                delivery_attempt(delivery_id=delivery_id)
    types = [json.loads(hit.body)["type"] for hit in receiver.hits]
    assert types == [
        "conversation.escalated",
        "handoff.timed_out",
        "lead.captured",
        "handoff.claimed",
        "handoff.resolved",
    ]
    claimed = json.loads(receiver.hits[3].body)["data"]
    assert claimed["handoff"]["claimed_by"]["id"] == personas.owner.pk and claimed["late"] is True
    assert Action.objects.get().failing_since is None


@pytest.mark.django_db
def test_an_event_nobody_subscribes_to_is_recorded_as_dispatched_without_a_task(
    personas: Personas, django_capture_on_commit_callbacks
) -> None:
    webhook_action(personas.chatbot, "https://hooks.example.com/x", events=["handoff.resolved"])
    with django_capture_on_commit_callbacks(execute=False) as hooks:
        escalate(personas.chatbot)
    event = OutboxEvent.objects.get(type="conversation.escalated")
    assert event.dispatched_at is not None  # the record is kept, fanned out to no one
    assert not [hook for hook in hooks if hook.__qualname__.startswith("enqueue_dispatch_on_commit")]
    assert actions_sweep()["dispatched"] == 0
    assert not Delivery.objects.exists()
