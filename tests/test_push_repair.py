"""A process killed between committing an event and publishing it must not leave an open widget
waiting forever: the push-repair sweep republishes committed events that have no push receipt."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from handoff.models import Handoff
from handoff.pushes import conversation_pushes_repair
from handoff.transitions.timers import handoff_expire
from pivra.realtime import push_receipts, visitor_group
from tests.channel_helpers import frames_heard
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request


@pytest.fixture
def bot(personas: Personas):
    return enable_handoff(personas.chatbot, timeout=30)


def test_an_expiry_committed_by_a_worker_that_died_before_publishing_reaches_the_widget(
    bot, django_capture_on_commit_callbacks
) -> None:
    visitor, conversation = new_visitor(bot)
    with django_capture_on_commit_callbacks(execute=True):
        handoff = request(visitor, conversation)
    conversation.refresh_from_db()
    pushed_before = conversation.last_seq
    assert push_receipts([conversation.pk]) == {conversation.pk: pushed_before}

    # The worker commits the expiry and dies before its after-commit hooks run.
    with django_capture_on_commit_callbacks(execute=False) as lost:
        assert handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at + timedelta(seconds=1))
    assert lost, "the expiry registers its broadcasts after commit"
    conversation.refresh_from_db()
    assert push_receipts([conversation.pk]) == {conversation.pk: pushed_before}

    later = timezone.now() + timedelta(seconds=5)

    def sweep() -> None:
        with django_capture_on_commit_callbacks(execute=True):  # the sweep runs in autocommit mode
            conversation_pushes_repair(now=later)

    frames = frames_heard(visitor_group(visitor.public_id), sweep)
    events = [f for f in frames if f["type"] == "event"]
    states = [f for f in frames if f["type"] == "state"]
    assert [e["seq"] for e in events] == list(range(pushed_before + 1, conversation.last_seq + 1))
    assert events[-1]["kind"] == "handoff.timed_out"
    assert states and states[-1]["state"]["handoff"]["status"] == Handoff.Status.BUSY
    assert states[-1]["state"]["last_seq"] == conversation.last_seq
    assert push_receipts([conversation.pk]) == {conversation.pk: conversation.last_seq}

    # Repaired once: the next sweep has nothing to do.
    assert frames_heard(visitor_group(visitor.public_id), sweep) == []


def test_events_published_normally_are_not_published_again(bot, django_capture_on_commit_callbacks) -> None:
    visitor, conversation = new_visitor(bot)
    with django_capture_on_commit_callbacks(execute=True):
        request(visitor, conversation)
    later = timezone.now() + timedelta(seconds=5)
    assert conversation_pushes_repair(now=later) == 0
    assert frames_heard(visitor_group(visitor.public_id), lambda: conversation_pushes_repair(now=later)) == []


def test_a_fresh_event_gets_time_for_its_own_publish_before_the_sweep_steps_in(
    bot, django_capture_on_commit_callbacks
) -> None:
    visitor, conversation = new_visitor(bot)
    with django_capture_on_commit_callbacks(execute=False):
        request(visitor, conversation)  # committed, not yet published
    assert conversation_pushes_repair(now=timezone.now()) == 0
    assert conversation_pushes_repair(now=timezone.now() + timedelta(seconds=5)) == 1


def test_a_state_lost_after_its_event_went_out_is_announced_by_the_sweep(
    bot, django_capture_on_commit_callbacks
) -> None:
    visitor, conversation = new_visitor(bot)
    with django_capture_on_commit_callbacks(execute=True):
        handoff = request(visitor, conversation)

    # The worker commits the expiry, publishes its event, and dies before publishing the new state.
    with django_capture_on_commit_callbacks(execute=False) as hooks:
        assert handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at + timedelta(seconds=1))
    event_pushes = [hook for hook in hooks if hook.__qualname__.startswith("_send_with_receipt_on_commit")][:1]
    heard = frames_heard(visitor_group(visitor.public_id), lambda: [push() for push in event_pushes])
    conversation.refresh_from_db()
    assert [f["kind"] for f in heard] == ["handoff.timed_out"]  # the event went out, the state did not
    assert push_receipts([conversation.pk]) == {conversation.pk: conversation.last_seq}
    assert push_receipts([conversation.pk], state=True)[conversation.pk] < conversation.last_seq

    later = timezone.now() + timedelta(seconds=5)

    def sweep() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            assert conversation_pushes_repair(now=later) == 1

    frames = frames_heard(visitor_group(visitor.public_id), sweep)
    assert [f["type"] for f in frames] == ["state"]  # the event is not sent twice
    assert frames[0]["state"]["handoff"]["status"] == Handoff.Status.BUSY
    assert push_receipts([conversation.pk], state=True) == {conversation.pk: conversation.last_seq}
    assert conversation_pushes_repair(now=later) == 0
