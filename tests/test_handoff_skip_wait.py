"""Skip the wait: a request outside office hours, or with nobody Online when the owner says so, is
recorded and goes straight to Team busy with the offline message — one expiry transition, no timer,
``handoff.timed_out`` with its reason — and a late claim still brings the agent to the visitor."""

from __future__ import annotations

import dataclasses
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from chatbots.handoff_options import HandoffOptions, chatbot_update_handoff_options
from chatbots.models import Chatbot
from chatbots.presence import presence_release, presence_touch
from conversations.models import Conversation
from handoff.models import Handoff
from handoff.pipeline import offer_on_keyword
from handoff.state import conversation_state
from handoff.transitions.claim import handoff_claim
from handoff.transitions.request import handoff_offer_answer
from handoff.transitions.timers import handoff_expire
from pivra.console.selectors import handoff_badge
from tests.factories import Personas
from tests.handoff_helpers import event_kinds, new_visitor, outbox_events, request, say

pytestmark = pytest.mark.django_db

# Monday 2026-03-30 in Paris (UTC+2 since the night before): 11:00 and 21:00 local.
IN_HOURS = datetime(2026, 3, 30, 9, 0, tzinfo=UTC)
AFTER_HOURS = datetime(2026, 3, 30, 19, 0, tzinfo=UTC)


def _options(bot: Chatbot, **changes: Any) -> Chatbot:
    chatbot_update_handoff_options(chatbot=bot, options=dataclasses.replace(HandoffOptions.of(bot), **changes))
    return Chatbot.objects.get(pk=bot.pk)


def _office_hours(bot: Chatbot, **changes: Any) -> Chatbot:
    weekly = {day: [["09:00", "18:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}
    return _options(bot, office_hours_enabled=True, timezone="Europe/Paris", weekly=weekly, **changes)


@pytest.fixture
def timers(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    monkeypatch.setattr(
        "handoff.tasks.expire_handoff.apply_async", lambda args, eta=None, **options: calls.append((args, eta))
    )
    return calls


@pytest.fixture
def agent_console(personas: Personas) -> Iterator[None]:
    """The teammate has a console socket open (and chose Online, the default): they are Online."""
    socket = uuid.uuid4().hex
    presence_touch(workspace_id=personas.workspace.pk, user_id=personas.teammate.pk, socket_id=socket)
    yield
    presence_release(workspace_id=personas.workspace.pk, user_id=personas.teammate.pk, socket_id=socket, now=0.0)


def _assert_skipped(handoff: Handoff, conversation: Conversation, *, reason: str, now: datetime, timers: list) -> None:
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.BUSY and handoff.busy_reason == reason
    assert handoff.requested_at == now and handoff.timed_out_at == now
    assert timers == []  # no expiry timer armed
    assert event_kinds(conversation)[-2:] == ["handoff.requested", "handoff.timed_out"]
    busy = conversation.events.get(kind="handoff.timed_out")
    assert busy.text == handoff.chatbot.handoff_offline_message and busy.data == {"reason": reason}
    (escalated,) = outbox_events("conversation.escalated")
    (timed_out,) = outbox_events("handoff.timed_out")
    assert timed_out.payload["data"]["reason"] == reason
    assert timed_out.payload["data"]["handoff"]["status"] == "busy"
    assert escalated.created_at <= timed_out.created_at
    state = conversation_state(Conversation.objects.get(pk=conversation.pk))
    assert state["handoff"]["status"] == "busy" and state["handoff"]["busy_reason"] == reason
    assert state["handoff"]["offline_message"] == handoff.chatbot.handoff_offline_message


def test_a_request_after_hours_goes_straight_to_team_busy_and_a_late_claim_upgrades(
    bot: Chatbot, personas: Personas, agent_console: None, timers: list, django_capture_on_commit_callbacks: Any
) -> None:
    bot = _office_hours(bot)
    visitor, conversation = new_visitor(bot)
    with django_capture_on_commit_callbacks(execute=True):
        handoff = request(visitor, conversation, now=AFTER_HOURS)
    assert handoff.status == Handoff.Status.BUSY  # what the widget's ack carries: no pending first
    _assert_skipped(handoff, conversation, reason="after_hours", now=AFTER_HOURS, timers=timers)

    assert handoff_badge(handoff, conversation_status="handoff") == ("Team busy · after hours", "danger")

    claimed = handoff_claim(agent=personas.teammate, conversation_public_id=str(conversation.public_id))
    assert claimed.status == Handoff.Status.ACTIVE
    assert conversation.events.get(kind="handoff.claimed").data == {"late": True}
    assert conversation_state(Conversation.objects.get(pk=conversation.pk))["handoff"]["status"] == "active"


def test_a_request_in_hours_with_an_agent_online_waits_as_before(
    bot: Chatbot, agent_console: None, timers: list, django_capture_on_commit_callbacks: Any
) -> None:
    bot = _office_hours(bot)
    visitor, conversation = new_visitor(bot)
    with django_capture_on_commit_callbacks(execute=True):
        handoff = request(visitor, conversation, now=IN_HOURS)
    assert handoff.status == Handoff.Status.PENDING and handoff.busy_reason == ""
    assert len(timers) == 1 and outbox_events("handoff.timed_out") == []
    handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)
    handoff.refresh_from_db()
    assert handoff.busy_reason == "timeout"
    (timed_out,) = outbox_events("handoff.timed_out")
    assert timed_out.payload["data"]["reason"] == "timeout"
    assert conversation.events.get(kind="handoff.timed_out").text == bot.handoff_busy_message


def test_with_nobody_online_the_request_skips_the_wait(
    bot: Chatbot, personas: Personas, timers: list, django_capture_on_commit_callbacks: Any
) -> None:
    bot = _options(bot, skip_wait_when_offline=True, offline_message="Back at 9. Leave your number!")
    visitor, conversation = new_visitor(bot)
    now = datetime(2026, 6, 1, 12, 0, tzinfo=UTC)
    with django_capture_on_commit_callbacks(execute=True):
        handoff = request(visitor, conversation, now=now)
    _assert_skipped(handoff, conversation, reason="offline", now=now, timers=timers)
    assert conversation.events.get(kind="handoff.timed_out").text == "Back at 9. Leave your number!"
    claimed = handoff_claim(agent=personas.owner, conversation_public_id=str(conversation.public_id))
    assert claimed.status == Handoff.Status.ACTIVE and claimed.claimed_by_id == personas.owner.pk


def test_an_agent_online_but_away_does_not_count(bot: Chatbot, personas: Personas, agent_console: None) -> None:
    bot = _options(bot, skip_wait_when_offline=True)
    visitor, conversation = new_visitor(bot)
    personas.teammate.memberships.filter(workspace=personas.workspace).update(availability="away")
    handoff = request(visitor, conversation)
    assert handoff.status == Handoff.Status.BUSY and handoff.busy_reason == "offline"


def test_with_the_setting_off_nobody_online_still_waits(bot: Chatbot, timers: list) -> None:
    assert bot.handoff_skip_wait_when_offline is False  # tests/factories: the brief's classic flow
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    assert handoff.status == Handoff.Status.PENDING and handoff.busy_reason == ""


def test_the_product_default_skips_the_wait() -> None:
    assert Chatbot._meta.get_field("handoff_skip_wait_when_offline").default is True


def test_a_keyword_offer_accepted_after_hours_skips_the_wait_too(bot: Chatbot, agent_console: None) -> None:
    bot = _office_hours(bot)
    visitor, conversation = new_visitor(bot)
    say(visitor, conversation, "can I speak to someone")
    offer = conversation.events.get(kind="handoff.offer")
    answer = handoff_offer_answer(
        visitor=visitor,
        conversation_public_id=str(conversation.public_id),
        offer_seq=offer.seq,
        accept=True,
        client_id=uuid.uuid4().hex,
        now=AFTER_HOURS,
    )
    assert answer.handoff is not None and answer.handoff.status == Handoff.Status.BUSY
    assert answer.handoff.busy_reason == "after_hours"


def test_hiding_the_button_outside_hours_tells_the_widget_and_silences_keyword_offers(bot: Chatbot) -> None:
    visitor, conversation = new_visitor(bot)
    # Open all week but closed yesterday, today and tomorrow (UTC): outside hours whatever the clock says.
    today = datetime.now(UTC).date()
    weekly = {day: [["00:00", "00:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    closed = [(today.fromordinal(today.toordinal() + d)).isoformat() for d in (-1, 0, 1)]
    bot = _options(bot, office_hours_enabled=True, timezone="UTC", weekly=weekly, closed_dates=closed)
    conversation = Conversation.objects.get(pk=conversation.pk)
    assert conversation_state(conversation)["handoff_hidden"] is False  # closed, but the owner shows it
    bot = _options(bot, hide_outside_hours=True)
    conversation = Conversation.objects.get(pk=conversation.pk)
    assert conversation_state(conversation)["handoff_hidden"] is True
    received = say(visitor, conversation, "I want to speak to someone")
    assert offer_on_keyword(conversation=conversation, event=received.event) is False
    assert not conversation.events.filter(kind="handoff.offer").exists()
    bot = _options(bot, office_hours_enabled=False)
    assert conversation_state(Conversation.objects.get(pk=conversation.pk))["handoff_hidden"] is False
