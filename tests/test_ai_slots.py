"""AI calls capped per chatbot and per workspace, one reply per message at a time, an enqueue that
never fails the visitor's request, and the sweep that answers a message whose task was lost.
Real Redis and PostgreSQL, committed transactions, a real loopback OpenAI-compatible server."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import redis as redis_lib
from celery.exceptions import Retry
from django.conf import settings as django_settings
from django.db import connection
from kombu.exceptions import OperationalError

from chatbots.models import Chatbot
from conversations import ai_slots
from conversations.ai import RETRY_SECONDS, AiBusy, conversation_reply_with_ai
from conversations.ai_slots import (
    ai_reply_lock,
    ai_reply_locked,
    ai_reply_mark_queued,
    ai_reply_unlock,
    ai_slot_acquire,
    ai_slot_release,
)
from conversations.ai_sweep import ai_unanswered
from conversations.models import Conversation, Event, Visitor
from conversations.tasks import generate_ai_reply, sweep_unanswered_messages
from handoff.transitions.request import handoff_offer_answer
from pivra.realtime import visitor_group
from tests.channel_helpers import frames_heard
from tests.factories import Personas, make_chatbot, make_personas
from tests.handoff_helpers import enable_handoff, new_visitor, request, say

pytestmark = pytest.mark.django_db(transaction=True)


def _broker_down(*args: Any) -> None:
    """The enqueue of a reply fails: the broker is out of reach when the message commits."""
    raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")


@pytest.fixture(autouse=True)
def _clean(settings: Any) -> Iterator[None]:
    settings.OUTBOUND_ALLOW_PRIVATE = True  # the fake AI endpoint listens on 127.0.0.1
    client = redis_lib.Redis.from_url(django_settings.REDIS_URL)
    stale = list(client.scan_iter(f"{django_settings.CHANNEL_PREFIX}:ai:*"))
    if stale:
        client.delete(*stale)  # ids restart with each test's tables: no lease of an earlier test may count
    yield
    client.close()


@pytest.fixture
def queued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """Every AI reply queued (not run): nothing reaches the test Redis's queues."""
    tasks: list[tuple[int, int]] = []
    monkeypatch.setattr("conversations.tasks.generate_ai_reply.delay", lambda c, s: tasks.append((c, s)))
    return tasks


@pytest.fixture
def personas(queued: list[tuple[int, int]]) -> Personas:
    return make_personas()


class _Responder:
    def __init__(self, calls: list[str]) -> None:
        self.calls = calls

    def stream(self, *, question: str, history: Any) -> Iterator[str]:
        self.calls.append(question)
        yield "An answer."


def _ai_replies(conversation: Conversation) -> list[Event]:
    return list(Event.objects.filter(conversation=conversation, author="ai").order_by("seq"))


# --- slots ---------------------------------------------------------------------------------------


def test_caps_hold_per_chatbot_and_per_workspace_and_a_release_frees_a_slot(personas: Personas, settings) -> None:
    settings.AI_CONCURRENCY_PER_CHATBOT, settings.AI_CONCURRENCY_PER_WORKSPACE = 2, 3
    first, second = personas.chatbot, make_chatbot(personas.workspace, "Second bot")
    other = personas.other_chatbot

    def take(bot: Chatbot) -> ai_slots.Slot | None:
        return ai_slot_acquire(chatbot_id=bot.pk, workspace_id=bot.workspace_id)

    held = [take(first), take(first)]
    assert all(held)
    assert take(first) is None  # the chatbot's cap
    held.append(take(second))
    assert held[-1] is not None
    assert take(second) is None  # the workspace's cap, though this chatbot has one running
    assert take(other) is not None  # another workspace is not touched
    ai_slot_release(held[0])  # type: ignore[arg-type]
    assert take(second) is not None


def test_a_slot_of_a_killed_worker_expires_with_its_lease(personas: Personas, settings, monkeypatch) -> None:
    settings.AI_CONCURRENCY_PER_CHATBOT = 1
    monkeypatch.setattr(ai_slots, "LEASE_SECONDS", 1)
    bot = personas.chatbot
    assert ai_slot_acquire(chatbot_id=bot.pk, workspace_id=bot.workspace_id) is not None  # never released
    assert ai_slot_acquire(chatbot_id=bot.pk, workspace_id=bot.workspace_id) is None
    time.sleep(1.2)
    assert ai_slot_acquire(chatbot_id=bot.pk, workspace_id=bot.workspace_id) is not None


def test_a_running_reply_keeps_its_short_leases_and_a_dead_one_frees_them_within_a_lease(
    personas: Personas, settings, monkeypatch
) -> None:
    """A reply may stream up to the LLM deadline (minutes), yet a killed worker's message must be
    answerable by the sweep seconds later: leases are short and renewed only while their holder runs."""
    settings.AI_CONCURRENCY_PER_CHATBOT, settings.LLM_DEADLINE = 1, 600.0
    monkeypatch.setattr(ai_slots, "LEASE_SECONDS", 1)
    monkeypatch.setattr(ai_slots, "RENEW_SECONDS", 0.2)
    bot = personas.chatbot
    lock = ai_reply_lock(conversation_id=1, reply_to_seq=1)
    slot = ai_slot_acquire(chatbot_id=bot.pk, workspace_id=bot.workspace_id)
    assert lock is not None and slot is not None
    with ai_slots.ai_leases_kept(lock=lock, slot=slot):
        time.sleep(2.5)  # well past one lease: still held while kept
        assert ai_reply_locked(conversation_id=1, reply_to_seq=1)
        assert ai_slot_acquire(chatbot_id=bot.pk, workspace_id=bot.workspace_id) is None
    # No longer kept (its worker is gone) and never released: both lapse within one lease.
    time.sleep(1.3)
    assert not ai_reply_locked(conversation_id=1, reply_to_seq=1)
    assert ai_slot_acquire(chatbot_id=bot.pk, workspace_id=bot.workspace_id) is not None


def test_a_reply_past_the_cap_waits_without_a_call_and_the_visitor_sees_typing(
    personas: Personas, settings, monkeypatch
) -> None:
    settings.AI_CONCURRENCY_PER_CHATBOT = 1
    bot = personas.chatbot
    running = ai_slot_acquire(chatbot_id=bot.pk, workspace_id=bot.workspace_id)
    assert running is not None
    calls: list[str] = []
    monkeypatch.setattr("conversations.ai.responder_for", lambda chatbot: _Responder(calls))
    visitor, conversation = new_visitor(bot)
    seq = say(visitor, conversation, "Shipping?").event.seq
    busy: list[AiBusy] = []

    def deferred() -> None:
        with pytest.raises(AiBusy) as raised:
            conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=seq)
        busy.append(raised.value)

    frames = frames_heard(visitor_group(visitor.public_id), deferred)
    assert frames == [{"type": "typing", "conversation": str(conversation.public_id), "author": "ai", "on": True}]
    assert calls == [] and not _ai_replies(conversation)
    assert RETRY_SECONDS[0] <= busy[0].retry_in <= RETRY_SECONDS[1]
    assert not ai_reply_locked(conversation_id=conversation.pk, reply_to_seq=seq)  # a twin may take its turn
    # Marked as queued: the unanswered sweep leaves a waiting reply alone.
    assert not ai_reply_mark_queued(conversation_id=conversation.pk, reply_to_seq=seq, only_if_new=True)
    ai_slot_release(running)
    assert conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=seq) is not None
    assert calls == ["Shipping?"]


def test_the_task_hands_a_capped_reply_back_to_the_broker_with_a_countdown(monkeypatch) -> None:
    def busy(**kwargs: Any) -> None:
        raise AiBusy(1.5)

    retried: list[dict[str, Any]] = []

    def retry(**kwargs: Any) -> Retry:
        retried.append(kwargs)
        return Retry()

    monkeypatch.setattr("conversations.tasks.conversation_reply_with_ai", busy)
    monkeypatch.setattr(generate_ai_reply, "retry", retry)
    with pytest.raises(Retry):
        generate_ai_reply(1, 2)
    assert retried == [{"countdown": 1.5}]


# --- no second copy while the first runs ---------------------------------------------------------


class _SlowLLM(BaseHTTPRequestHandler):
    """Three tokens, a third of a second apart; counts the requests it gets."""

    requests = 0
    lock = threading.Lock()

    def log_message(self, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", 0)))
        with self.lock:
            type(self).requests += 1
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        for piece in ["Free ", "shipping ", "over $75."]:
            time.sleep(0.3)
            self.wfile.write(f"data: {json.dumps({'choices': [{'delta': {'content': piece}}]})}\n\n".encode())
            self.wfile.flush()
        self.wfile.write(b"data: [DONE]\n\n")


@pytest.fixture
def slow_llm() -> Iterator[tuple[str, type[_SlowLLM]]]:
    handler = type("Handler", (_SlowLLM,), {"requests": 0, "lock": threading.Lock()})
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1", handler
    server.shutdown()


def _openai(bot: Chatbot, base_url: str) -> Chatbot:
    bot.ai_provider, bot.llm_base_url, bot.llm_api_key = Chatbot.Provider.OPENAI, base_url, "sk-test"
    bot.save()
    return bot


def test_two_copies_of_a_reply_at_once_make_one_llm_call_and_one_stream(personas: Personas, slow_llm) -> None:
    base_url, handler = slow_llm
    visitor, conversation = new_visitor(_openai(personas.chatbot, base_url))
    seq = say(visitor, conversation, "Shipping?").event.seq
    start = threading.Barrier(2)
    results: list[Event | None] = []

    def copy() -> None:
        try:
            start.wait()
            results.append(conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=seq))
        finally:
            connection.close()

    def both() -> None:
        threads = [threading.Thread(target=copy) for _ in range(2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(30)

    frames = frames_heard(visitor_group(visitor.public_id), both, quiet_seconds=1.0)
    assert handler.requests == 1
    assert [r is None for r in sorted(results, key=lambda r: r is None)] == [False, True]
    assert [(e.text, e.data["reply_to"]) for e in _ai_replies(conversation)] == [("Free shipping over $75.", seq)]
    assert [f["text"] for f in frames if f["type"] == "ai.delta"] == ["Free ", "shipping ", "over $75."]
    assert not ai_reply_locked(conversation_id=conversation.pk, reply_to_seq=seq)  # released once stored


# --- the enqueue never breaks a committed request ------------------------------------------------


def test_a_broker_out_of_reach_never_fails_the_visitors_message(personas: Personas, monkeypatch, caplog) -> None:
    def broker_down(*args: Any) -> None:
        raise OperationalError("Error 111 connecting to 127.0.0.1:6379. Connection refused.")

    monkeypatch.setattr("conversations.tasks.generate_ai_reply.delay", broker_down)
    visitor, conversation = new_visitor(personas.chatbot)
    received = say(visitor, conversation, "Shipping?")  # commits; the failed enqueue runs after
    stored = Event.objects.get(pk=received.event.pk)
    assert stored.text == "Shipping?" and stored.data == {"to_ai": True}
    assert "Redis unavailable (AI reply enqueue)" in caplog.text


# --- the unanswered sweep ------------------------------------------------------------------------


def _lost(visitor: Visitor, conversation: Conversation, text: str, monkeypatch: pytest.MonkeyPatch) -> int:
    """A visitor message whose AI reply never reached the queue."""
    with monkeypatch.context() as lost:
        lost.setattr("conversations.tasks.generate_ai_reply.delay", _broker_down)
        return say(visitor, conversation, text).event.seq


@pytest.fixture
def no_grace(settings: Any) -> None:
    settings.AI_UNANSWERED_GRACE_SECONDS = 0


def test_the_sweep_answers_a_message_whose_task_was_lost_exactly_once(
    personas: Personas, queued, no_grace, monkeypatch
) -> None:
    calls: list[str] = []
    monkeypatch.setattr("conversations.ai.responder_for", lambda chatbot: _Responder(calls))
    visitor, conversation = new_visitor(personas.chatbot)
    seq = _lost(visitor, conversation, "Shipping?", monkeypatch)
    assert sweep_unanswered_messages() == 1
    assert sweep_unanswered_messages() == 0  # queued once per lease, not on every run
    assert queued == [(conversation.pk, seq)]
    for conversation_id, reply_to in queued:
        conversation_reply_with_ai(conversation_id=conversation_id, reply_to_seq=reply_to)
    assert [e.data["reply_to"] for e in _ai_replies(conversation)] == [seq]
    ai_slots.ai_reply_unmark_queued(conversation_id=conversation.pk, reply_to_seq=seq)
    assert sweep_unanswered_messages() == 0  # answered
    assert calls == ["Shipping?"]


def test_the_sweep_leaves_alone_what_the_pipeline_did_not_give_the_ai(
    personas: Personas, queued, no_grace, monkeypatch
) -> None:
    bot = enable_handoff(personas.chatbot)
    # The keyword offer answered it.
    visitor, offered = new_visitor(bot)
    _lost(visitor, offered, "talk to real person", monkeypatch)
    assert offered.events.filter(kind="handoff.offer").exists()
    # Silenced: a person was asked for.
    other, silenced = new_visitor(bot)
    request(other, silenced)
    _lost(other, silenced, "Hello?", monkeypatch)
    # Answered by the AI already, and an older message the conversation has moved past.
    third, answered = new_visitor(bot)
    older = _lost(third, answered, "First question", monkeypatch)
    newer = say(third, answered, "Second question").event.seq
    conversation_reply_with_ai(conversation_id=answered.pk, reply_to_seq=newer)
    assert older and _ai_replies(answered)
    assert ai_unanswered() == []
    assert sweep_unanswered_messages() == 0 and queued == [(answered.pk, newer)]


def test_the_sweep_answers_a_declined_offers_message_when_that_enqueue_was_lost(
    personas: Personas, queued, no_grace, monkeypatch
) -> None:
    bot = enable_handoff(personas.chatbot)
    visitor, conversation = new_visitor(bot)
    seq = say(visitor, conversation, "talk to real person").event.seq
    offer = conversation.events.get(kind="handoff.offer")
    assert ai_unanswered() == []
    with monkeypatch.context() as lost:
        lost.setattr("conversations.tasks.generate_ai_reply.delay", _broker_down)
        handoff_offer_answer(
            visitor=visitor,
            conversation_public_id=str(conversation.public_id),
            offer_seq=offer.seq,
            accept=False,
            client_id="no-1",
        )
    assert ai_unanswered() == [(conversation.pk, seq)]


def test_the_sweep_waits_out_the_grace_skips_a_reply_in_progress_and_forgets_old_messages(
    personas: Personas, queued, monkeypatch, settings
) -> None:
    settings.AI_UNANSWERED_GRACE_SECONDS = 60
    visitor, conversation = new_visitor(personas.chatbot)
    seq = _lost(visitor, conversation, "Shipping?", monkeypatch)
    assert sweep_unanswered_messages() == 0  # its task may simply still be queued
    settings.AI_UNANSWERED_GRACE_SECONDS = 0
    lock = ai_reply_lock(conversation_id=conversation.pk, reply_to_seq=seq)
    assert lock is not None
    assert sweep_unanswered_messages() == 0  # a worker is answering it
    ai_reply_unlock(lock)
    Event.objects.filter(conversation=conversation, seq=seq).update(
        created_at=Event.objects.get(conversation=conversation, seq=seq).created_at - timedelta(minutes=61)
    )
    assert sweep_unanswered_messages() == 0  # past the look-back window
    assert queued == []


def test_a_queued_reply_is_left_alone_and_one_whose_worker_died_is_swept_within_a_lease(
    personas: Personas, queued, no_grace, monkeypatch
) -> None:
    monkeypatch.setattr(ai_slots, "LEASE_SECONDS", 1)
    visitor, conversation = new_visitor(personas.chatbot)
    seq = say(visitor, conversation, "Shipping?").event.seq
    assert sweep_unanswered_messages() == 0  # waiting in the queue (a backlog), not lost
    # A worker starts on it (its queued note goes, its lock is taken) and is killed: nothing renews
    # the lock any more.
    assert ai_reply_lock(conversation_id=conversation.pk, reply_to_seq=seq) is not None
    ai_slots.ai_reply_unmark_queued(conversation_id=conversation.pk, reply_to_seq=seq)
    assert sweep_unanswered_messages() == 0  # being answered
    time.sleep(1.3)
    assert sweep_unanswered_messages() == 1
    assert queued == [(conversation.pk, seq), (conversation.pk, seq)]


def test_a_late_copy_for_an_older_message_never_answers_after_a_newer_one_was(
    personas: Personas, queued, monkeypatch
) -> None:
    """After an outage a delayed task may run once the visitor's next message has its answer: it ends
    without calling the LLM, so replies never come out of turn."""
    calls: list[str] = []
    monkeypatch.setattr("conversations.ai.responder_for", lambda chatbot: _Responder(calls))
    visitor, conversation = new_visitor(personas.chatbot)
    first = say(visitor, conversation, "Shipping?").event.seq
    second = say(visitor, conversation, "And returns?").event.seq
    assert conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=second) is not None
    assert conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=first) is None
    assert calls == ["And returns?"]
    assert [e.data["reply_to"] for e in _ai_replies(conversation)] == [second]
