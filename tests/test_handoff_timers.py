"""Pending → Team busy: expiry, the sweep, timers and their re-arming, and a claim racing an expiry."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from handoff.transitions.timers import handoff_expire, handoff_expire_overdue, handoff_timers_rearm
from tests.handoff_helpers import enable_handoff, event_kinds, new_visitor, outbox_events, request

pytestmark = pytest.mark.django_db


def test_expiry_turns_pending_into_busy_exactly_once_and_never_after_a_claim(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    assert handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at - timedelta(seconds=1)) is False
    assert handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at) is True
    assert handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at + timedelta(seconds=5)) is False
    handoff.refresh_from_db()
    assert handoff.status == "busy"
    assert event_kinds(conversation) == ["handoff.requested", "handoff.timed_out"]
    assert conversation.events.order_by("seq").last().text == "Our team is currently busy…"  # type: ignore[union-attr]
    assert len(outbox_events("handoff.timed_out")) == 1

    visitor2, conversation2 = new_visitor(bot)
    claimed = request(visitor2, conversation2)
    handoff_claim(agent=personas.owner, conversation_public_id=str(conversation2.public_id))
    assert handoff_expire(handoff_id=claimed.pk, now=claimed.deadline_at + timedelta(minutes=1)) is False


def test_the_sweep_expires_only_overdue_pending_handoffs(bot) -> None:
    now = timezone.now()
    overdue = [request(*new_visitor(bot), now=now - timedelta(seconds=200)) for _ in range(3)]
    fresh = request(*new_visitor(bot), now=now)
    assert handoff_expire_overdue(now=now) == 3
    assert handoff_expire_overdue(now=now) == 0
    assert {h.status for h in Handoff.objects.filter(pk__in=[h.pk for h in overdue])} == {"busy"}
    fresh.refresh_from_db()
    assert fresh.status == "pending"


def test_a_starting_worker_rearms_the_timers_of_pending_handoffs_due_within_the_horizon(
    bot, personas, monkeypatch
) -> None:
    calls: list[tuple[Any, Any]] = []
    monkeypatch.setattr(
        "handoff.tasks.expire_handoff.apply_async", lambda args, eta=None, **options: calls.append((args, eta))
    )
    now = timezone.now()
    overdue = request(*new_visitor(bot), now=now - timedelta(seconds=200))
    soon = request(*new_visitor(bot), now=now)
    far = request(*new_visitor(bot), now=now + timedelta(seconds=200))  # beyond the broker's window: sweep only
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation, now=now)
    handoff_claim(agent=personas.owner, conversation_public_id=str(conversation.public_id))
    calls.clear()  # the requests' own timers
    assert handoff_timers_rearm(now=now) == 2
    assert calls == [((overdue.pk,), overdue.deadline_at), ((soon.pk,), soon.deadline_at)]
    assert far.pk not in {args[0] for args, _ in calls}


def test_only_a_worker_consuming_the_timer_queue_rearms(monkeypatch) -> None:
    from types import SimpleNamespace

    from handoff.tasks import rearm_handoff_timers

    armed: list[bool] = []

    def rearm() -> int:
        armed.append(True)
        return 0

    monkeypatch.setattr("handoff.tasks.handoff_timers_rearm", rearm)

    def consumer(*queues: str) -> SimpleNamespace:
        return SimpleNamespace(task_consumer=SimpleNamespace(queues=[SimpleNamespace(name=q) for q in queues]))

    rearm_handoff_timers(sender=consumer("deliveries"))
    assert armed == []
    rearm_handoff_timers(sender=consumer("celery", "deliveries"))
    assert armed == [True]


def _scheduled_expiries(monkeypatch) -> list[tuple[tuple[Any, ...], Any]]:
    calls: list[tuple[tuple[Any, ...], Any]] = []
    monkeypatch.setattr(
        "handoff.tasks.expire_handoff.apply_async", lambda args, eta=None, **options: calls.append((args, eta))
    )
    return calls


@pytest.fixture
def visibility_300(settings) -> None:
    settings.CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 300}


@pytest.mark.usefixtures("visibility_300")
def test_a_short_timeout_gets_a_timer_at_its_deadline(bot, django_capture_on_commit_callbacks, monkeypatch) -> None:
    calls = _scheduled_expiries(monkeypatch)
    visitor, conversation = new_visitor(bot)
    with django_capture_on_commit_callbacks(execute=True):
        handoff = request(visitor, conversation)
    assert calls == [((handoff.pk,), handoff.deadline_at)]


@pytest.mark.usefixtures("visibility_300")
def test_a_timeout_longer_than_the_broker_visibility_timeout_is_left_to_the_sweep(
    personas, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    # A long ETA would be redelivered every visibility timeout, in a loop: no timer, the sweep expires it.
    bot = enable_handoff(personas.chatbot, timeout=600)
    calls = _scheduled_expiries(monkeypatch)
    visitor, conversation = new_visitor(bot)
    with django_capture_on_commit_callbacks(execute=True):
        handoff = request(visitor, conversation)
    assert calls == []
    assert handoff_expire_overdue(now=handoff.deadline_at - timedelta(seconds=1)) == 0
    assert handoff_expire_overdue(now=handoff.deadline_at) == 1
    handoff.refresh_from_db()
    assert handoff.status == "busy"


@pytest.mark.usefixtures("visibility_300")
def test_a_broker_outage_does_not_turn_a_committed_request_into_an_error(
    bot, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    from kombu.exceptions import OperationalError

    def broker_down(*args: Any, **kwargs: Any) -> None:
        raise OperationalError("Error 111 connecting to redis: Connection refused.")

    monkeypatch.setattr("handoff.tasks.expire_handoff.apply_async", broker_down)
    visitor, conversation = new_visitor(bot)
    with django_capture_on_commit_callbacks(execute=True):
        handoff = request(visitor, conversation)
    assert Handoff.objects.get(pk=handoff.pk).status == "pending"
    assert handoff_expire_overdue(now=handoff.deadline_at) == 1  # the sweep still turns it to Team busy


def test_the_beat_schedule_runs_the_handoff_sweep(settings) -> None:
    from pivra.celery import app

    entry = app.conf.beat_schedule["handoff-sweep"]
    assert entry["task"] == "handoff.tasks.sweep_overdue_handoffs"
    assert entry["schedule"] == settings.HANDOFF_SWEEP_SECONDS
    assert "handoff.tasks.sweep_overdue_handoffs" in app.tasks


def test_a_claim_that_waited_behind_an_expiry_is_dated_after_the_timeout(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    timed_out_at = handoff.deadline_at + timedelta(seconds=1)
    assert handoff_expire(handoff_id=handoff.pk, now=timed_out_at)
    # The claim's clock was read before its update waited for the expiry's row lock.
    handoff_claim(
        agent=personas.teammate,
        conversation_public_id=str(conversation.public_id),
        now=handoff.deadline_at - timedelta(seconds=3),
    )
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.ACTIVE
    assert handoff.claimed_at == timed_out_at
    assert outbox_events("handoff.claimed")[-1].payload["data"]["late"] is True
