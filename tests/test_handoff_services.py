from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from django.utils import timezone

from actions.models import OutboxEvent
from chatbots.services import subscription_set
from conversations.ai import conversation_reply_with_ai
from conversations.models import Conversation, Event
from handoff.keywords import matching_keyword, normalize_phrase
from handoff.models import Handoff
from handoff.services import (
    conversation_start_new,
    handoff_claim,
    handoff_continue_with_ai,
    handoff_expire,
    handoff_expire_overdue,
    handoff_offer_answer,
    handoff_reply,
    handoff_resolve,
    handoff_timers_rearm,
    lead_capture,
    parse_phone,
)
from handoff.state import conversation_state, visitor_current_conversation
from pivra.errors import Conflict, DomainError, Forbidden, NotFound
from pivra.realtime import visitor_group
from tests.channel_helpers import frames_heard
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request, say

pytestmark = pytest.mark.django_db


@pytest.fixture
def bot(personas: Personas):
    return enable_handoff(personas.chatbot)


def _kinds(conversation: Conversation) -> list[str]:
    return list(conversation.events.order_by("seq").values_list("kind", flat=True))


def _outbox(kind: str) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(type=kind))


def test_a_button_request_makes_the_conversation_pending_and_records_everything(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    conversation.refresh_from_db()
    assert handoff.status == "pending" and handoff.trigger == "button"
    assert conversation.status == "handoff"
    assert _kinds(conversation) == ["handoff.requested"]
    assert conversation.events.get().text == "Connecting you with the team now…"
    (escalated,) = _outbox("conversation.escalated")
    assert escalated.payload["data"]["handoff"]["trigger"] == "button"
    assert escalated.payload["data"]["conversation"]["id"] == str(conversation.public_id)
    assert escalated.payload["version"] == 1
    assert (handoff.deadline_at - handoff.requested_at) == timedelta(seconds=180)


def test_a_second_request_returns_the_same_handoff_and_escalates_once(bot) -> None:
    visitor, conversation = new_visitor(bot)
    first = request(visitor, conversation)
    second = request(visitor, conversation)
    assert first.pk == second.pk
    assert len(_outbox("conversation.escalated")) == 1


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


def test_the_first_claim_wins_and_the_second_is_told_who_holds_it(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    handoff = handoff_claim(agent=personas.owner, conversation_public_id=str(conversation.public_id))
    assert handoff.status == "active" and handoff.claimed_by == personas.owner
    with pytest.raises(Conflict) as error:
        handoff_claim(agent=personas.teammate, conversation_public_id=str(conversation.public_id))
    assert error.value.code == "already_claimed"
    assert error.value.detail == "Already claimed by owner."
    assert error.value.status == 409
    # Claiming again by the holder is harmless.
    assert handoff_claim(agent=personas.owner, conversation_public_id=str(conversation.public_id)).pk == handoff.pk
    assert len(_outbox("handoff.claimed")) == 1


def test_an_outsider_cannot_see_or_claim(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    with pytest.raises(NotFound):
        handoff_claim(agent=personas.outsider, conversation_public_id=str(conversation.public_id))
    with pytest.raises(NotFound):
        handoff_claim(agent=personas.owner, conversation_public_id="not-a-uuid")


def test_only_the_assignee_replies(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    conv_id = str(conversation.public_id)
    with pytest.raises(Conflict, match="Claim this conversation"):
        handoff_reply(agent=personas.owner, conversation_public_id=conv_id, text="Hi", client_id="a1")
    handoff_claim(agent=personas.owner, conversation_public_id=conv_id)
    with pytest.raises(Forbidden) as error:
        handoff_reply(agent=personas.teammate, conversation_public_id=conv_id, text="Me too", client_id="b1")
    assert error.value.code == "not_assignee"
    received = handoff_reply(agent=personas.owner, conversation_public_id=conv_id, text="Hi, I'm here", client_id="a1")
    again = handoff_reply(agent=personas.owner, conversation_public_id=conv_id, text="Hi, I'm here", client_id="a1")
    assert received.event.author == "agent" and received.event.agent_name == "Support agent"  # no first name
    assert again.duplicate and again.event.seq == received.event.seq


def test_expiry_turns_pending_into_busy_exactly_once_and_never_after_a_claim(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    assert handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at - timedelta(seconds=1)) is False
    assert handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at) is True
    assert handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at + timedelta(seconds=5)) is False
    handoff.refresh_from_db()
    assert handoff.status == "busy"
    assert _kinds(conversation) == ["handoff.requested", "handoff.timed_out"]
    assert conversation.events.order_by("seq").last().text == "Our team is currently busy…"  # type: ignore[union-attr]
    assert len(_outbox("handoff.timed_out")) == 1

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


def test_team_busy_lead_capture_and_continue_then_a_late_claim_brings_the_agent_back(bot, personas) -> None:
    visitor, conversation = new_visitor(bot, locale="fr-FR")
    handoff = request(visitor, conversation)
    handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)

    with pytest.raises(DomainError) as error:
        lead_capture(visitor=visitor, conversation_public_id=str(conversation.public_id), phone="12")
    assert error.value.code == "invalid_phone"
    lead_capture(visitor=visitor, conversation_public_id=str(conversation.public_id), phone="06 12 34 56 78")
    conversation.refresh_from_db()
    assert conversation.lead["phone"] == "+33612345678"
    (captured,) = _outbox("lead.captured")
    assert captured.payload["data"]["visitor"]["phone"] == "+33612345678"

    fresh = handoff_continue_with_ai(visitor=visitor, conversation_public_id=str(conversation.public_id))
    assert fresh.status == "open" and fresh.pk != conversation.pk
    assert visitor_current_conversation(visitor=visitor).pk == fresh.pk
    handoff.refresh_from_db()
    assert handoff.status == "busy"  # still claimable

    handoff_claim(agent=personas.teammate, conversation_public_id=str(conversation.public_id))
    current = visitor_current_conversation(visitor=visitor)
    assert current.pk == conversation.pk
    state = conversation_state(current)
    assert state["handoff"]["status"] == "active" and state["handoff"]["agent"] == "Support agent"
    late = _outbox("handoff.claimed")[0]
    assert late.payload["data"]["late"] is True


def test_continue_with_ai_is_only_offered_while_busy(bot) -> None:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    with pytest.raises(Conflict):
        handoff_continue_with_ai(visitor=visitor, conversation_public_id=str(conversation.public_id))


def test_resolve_closes_the_conversation_with_its_thread_whole(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    say(visitor, conversation, "I need help with my order")
    request(visitor, conversation)
    conv_id = str(conversation.public_id)
    handoff_claim(agent=personas.owner, conversation_public_id=conv_id)
    handoff_reply(agent=personas.owner, conversation_public_id=conv_id, text="Sure, what's the number?", client_id="x")
    say(visitor, conversation, "It's 1234")
    with pytest.raises(Forbidden):
        handoff_resolve(agent=personas.teammate, conversation_public_id=conv_id)
    handoff = handoff_resolve(agent=personas.owner, conversation_public_id=conv_id)
    conversation.refresh_from_db()
    assert handoff.status == "resolved" and conversation.status == "closed" and conversation.closed_at
    assert _kinds(conversation) == [
        "message",
        "handoff.requested",
        "handoff.claimed",
        "message",
        "message",
        "handoff.resolved",
    ]
    assert conversation.events.last().text == "Conversation resolved ✓"  # type: ignore[union-attr]
    with pytest.raises(DomainError, match="resolved"):
        say(visitor, conversation, "one more thing")
    with pytest.raises(Conflict):
        handoff_resolve(agent=personas.owner, conversation_public_id=conv_id)
    fresh = conversation_start_new(visitor=visitor)
    assert fresh.status == "open"
    assert visitor_current_conversation(visitor=visitor).pk == fresh.pk
    assert len(_outbox("handoff.resolved")) == 1


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


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Can I speak to someone?", "speak to someone"),
        ("SPEAK TO SOMEONE!!!", "speak to someone"),
        ("speak   to\tsomeone", "speak to someone"),
        ("Je veux parler à quelqu'un", "parler a quelqu un"),
        ("speak to someones", None),
        ("I can't speak. To someone else", "speak to someone"),
        # Spacing is ignored, not just collapsed: words may be run together or split.
        ("speakto someone", "speak to someone"),
        ("speak to some one", "speak to someone"),
        ("Speak-to-some-one!", "speak to someone"),
        ("SPEAKTOSOMEONE", "speak to someone"),
        # …but a match starts and ends on word boundaries.
        ("unspeak to someone", None),
        ("speak to someonewhere", None),
        ("Je veux PARLER A QUELQU UN", "parler a quelqu un"),
        ("parler à quelqu\u2019un", "parler a quelqu un"),
    ],
)
def test_keywords_match_whatever_the_case_accents_punctuation_and_spacing(text: str, expected: str | None) -> None:
    keywords = ["Speak to someone", "parler à quelqu'un"]
    found = matching_keyword(text=text, keywords=keywords)
    assert (normalize_phrase(text=found) if found else None) == expected


@pytest.mark.parametrize(
    ("raw", "locale", "expected"),
    [
        ("06 12 34 56 78", "fr-FR", "+33612345678"),
        ("+44 7911 123456", "", "+447911123456"),
        ("07911 123456", "en-GB", "+447911123456"),
        ("(415) 555-2671", "en-US", "+14155552671"),  # FIXED_LINE_OR_MOBILE: the US plan can't tell
        ("+33 6 12 34 56 78", "en-GB", "+33612345678"),
    ],
)
def test_phone_numbers_are_parsed_to_e164(raw: str, locale: str, expected: str) -> None:
    assert parse_phone(raw=raw, locale=locale) == expected


@pytest.mark.parametrize(("raw", "locale"), [("", "en-GB"), ("hello", "en-GB"), ("123", "fr-FR"), ("07911 123456", "")])
def test_bad_phone_numbers_get_a_clear_error(raw: str, locale: str) -> None:
    with pytest.raises(DomainError) as error:
        parse_phone(raw=raw, locale=locale)
    assert error.value.code == "invalid_phone"


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("Søren here, I want to speak to Bjørn", "Bjorn"),
        ("Ask Łukasz", "lukasz"),
        ("Encyclopædia", "encyclopaedia"),
        ("Mon cœur", "coeur"),
        ("Đorđe please", "dorde"),
        ("Þór", "thor"),
        ("I need a HUMAN", "human"),
        ("我想找人工客服谢谢", "人工客服"),
    ],
)
def test_keywords_fold_letters_that_do_not_decompose(text: str, keyword: str) -> None:
    assert matching_keyword(text=text, keywords=[keyword]) == keyword


@pytest.mark.parametrize("text", ["That was inhumane", "humans only", "superhuman", "a humanoid"])
def test_a_keyword_never_matches_inside_or_across_part_of_a_word(text: str) -> None:
    assert matching_keyword(text=text, keywords=["human"]) is None


def test_the_first_matching_keyword_is_returned_and_empty_keywords_never_match() -> None:
    assert matching_keyword(text="!!!", keywords=["", "?!"]) is None
    assert matching_keyword(text="talk to real person now", keywords=["human", "real person", "talk to"]) == (
        "real person"
    )


def test_a_uk_landline_is_refused_with_a_clear_error() -> None:
    with pytest.raises(DomainError) as error:
        parse_phone(raw="020 7946 0018", locale="en-GB")
    # invalid_phone is what the widget shows inline under the mobile number field.
    assert error.value.code == "invalid_phone"
    assert error.value.detail == "That looks like a landline. Please enter a mobile number."


def test_a_refused_landline_is_not_saved_as_the_lead(bot) -> None:
    visitor, conversation = new_visitor(bot, locale="fr-FR")
    handoff = request(visitor, conversation)
    handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)
    with pytest.raises(DomainError, match="landline"):
        lead_capture(visitor=visitor, conversation_public_id=str(conversation.public_id), phone="01 42 68 53 00")
    conversation.refresh_from_db()
    assert "phone" not in conversation.lead
    assert not _outbox("lead.captured")


def _frames_sent(monkeypatch) -> list[dict[str, Any]]:
    sent: list[dict[str, Any]] = []

    def record(groups: Any, frame: dict[str, Any]) -> bool:
        sent.append(frame)
        return True

    monkeypatch.setattr("pivra.realtime.send_now_rollback_unsafe", record)
    return sent


def test_continue_with_ai_after_a_claim_keeps_the_visitor_with_the_agent(
    bot, personas, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)
    handoff_claim(agent=personas.owner, conversation_public_id=str(conversation.public_id))
    sent = _frames_sent(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        result = handoff_continue_with_ai(
            visitor=visitor, conversation_public_id=str(conversation.public_id), client_id="cont-1"
        )
    assert result.pk == conversation.pk
    assert conversation_state(result)["handoff"]["status"] == "active"
    assert not [f for f in sent if f.get("type") == "switch"]
    assert "conversation.continued" not in _kinds(conversation)
    assert Conversation.objects.filter(visitor=visitor).count() == 1


def test_continue_with_ai_while_busy_switches_to_a_fresh_conversation(
    bot, django_capture_on_commit_callbacks, monkeypatch
) -> None:
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)
    sent = _frames_sent(monkeypatch)
    with django_capture_on_commit_callbacks(execute=True):
        fresh = handoff_continue_with_ai(
            visitor=visitor, conversation_public_id=str(conversation.public_id), client_id="cont-1"
        )
    (switch,) = [f for f in sent if f.get("type") == "switch"]
    assert switch["state"]["conversation"] == str(fresh.public_id)
    again = handoff_continue_with_ai(
        visitor=visitor, conversation_public_id=str(conversation.public_id), client_id="cont-1"
    )
    assert again.pk == fresh.pk
    assert _kinds(conversation).count("conversation.continued") == 1


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
    (resolved,) = _outbox("handoff.resolved")
    assert resolved.payload["data"]["reason"] == "superseded"
    assert resolved.payload["data"]["conversation"]["status"] == "closed"
    assert resolved.payload["data"]["handoff"]["status"] == "resolved"


def test_an_agents_resolve_records_no_reason(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    handoff_resolve(agent=personas.owner, conversation_public_id=str(conversation.public_id))
    (resolved,) = _outbox("handoff.resolved")
    assert "reason" not in resolved.payload["data"]
    assert resolved.payload["data"]["handoff"]["status"] == "resolved"
    assert conversation.events.order_by("seq").last().data == {}  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("helper", "args"),
    [
        (parse_phone, ("07911 123456",)),
        (matching_keyword, ("speak to someone", ["speak to someone"])),
        (normalize_phrase, ("Speak!",)),
    ],
)
def test_public_helpers_take_keyword_arguments_only(helper: Any, args: tuple[Any, ...]) -> None:
    with pytest.raises(TypeError):
        helper(*args)


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
    assert _outbox("handoff.claimed")[-1].payload["data"]["late"] is True
