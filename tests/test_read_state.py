"""Typing and read state, the services: typing is never stored (no write at all, counted), the visitor's
"seen" and the agent's read mark are one guarded statement per batch that only moves forward, text the
visitor has not sent reaches agents only with the owner's preview setting on, and nobody reaches another
workspace's conversation or a live chat they do not hold."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chatbots.models import Chatbot
from conversations.models import Conversation, ConversationRead, Event, Visitor
from conversations.read_state import conversation_mark_read, conversation_mark_seen_by_visitor
from handoff.transitions.claim import handoff_claim
from handoff.transitions.reply import handoff_reply
from pivra.console import selectors, unread
from pivra.console.live_marks import agent_typing_frame, agent_typing_target
from pivra.console.revocation import console_user_group
from pivra.realtime import conversation_group
from pivra.widget import live
from pivra.widget.tokens import visitor_token
from tests.channel_helpers import frames_heard
from tests.factories import Personas, handoff_settings_form, make_personas
from tests.handoff_helpers import enable_handoff, new_visitor, request, say

pytestmark = pytest.mark.django_db(transaction=True)
WRITES = ("INSERT", "UPDATE", "DELETE")


def _writes(queries: CaptureQueriesContext) -> list[str]:
    return [q["sql"] for q in queries.captured_queries if q["sql"].lstrip().upper().startswith(WRITES)]


@pytest.fixture
def world() -> Personas:
    personas = make_personas()
    personas.owner.first_name = "Alice"
    personas.owner.save(update_fields=["first_name"])
    enable_handoff(personas.chatbot)
    return personas


def _live_chat(world: Personas, *, replies: int = 2) -> tuple[Visitor, Conversation]:
    """A visitor in a live chat claimed by the owner (Alice), with ``replies`` agent messages."""
    visitor, conversation = new_visitor(world.chatbot)
    say(visitor, conversation, "Hello")
    request(visitor, conversation)
    handoff_claim(agent=world.owner, conversation_public_id=str(conversation.public_id))
    for n in range(replies):
        handoff_reply(
            agent=world.owner, conversation_public_id=str(conversation.public_id), text=f"Reply {n}", client_id=f"r{n}"
        )
    conversation.refresh_from_db()
    return visitor, conversation


def _heard(group: str, run: Callable[[], Any]) -> list[dict[str, Any]]:
    return frames_heard(group, run, quiet_seconds=0.3)


# --- seen (the visitor) -----------------------------------------------------------------------


def test_seen_moves_forward_only_in_one_statement_and_is_announced_on_commit(world: Personas) -> None:
    visitor, conversation = _live_chat(world)
    key = str(conversation.public_id)
    with CaptureQueriesContext(connection) as queries:
        frames = _heard(
            conversation_group(key),
            lambda: conversation_mark_seen_by_visitor(visitor_id=visitor.pk, conversation_public_id=key, seq=4),
        )
    assert _writes(queries) == [q for q in _writes(queries) if q.lstrip().upper().startswith("UPDATE")]
    assert len(_writes(queries)) == 1  # one write for the batch
    assert frames == [{"type": "seen", "conversation": key, "seq": 4}]

    with CaptureQueriesContext(connection) as again:
        older = conversation_mark_seen_by_visitor(visitor_id=visitor.pk, conversation_public_id=key, seq=3)
    assert older is None  # never backwards
    assert len(again.captured_queries) == 1  # the guarded statement, which matched nothing
    conversation.refresh_from_db()
    assert conversation.visitor_seen_seq == 4


def test_seen_is_clamped_to_the_last_seq_and_ignores_updated_at(world: Personas) -> None:
    visitor, conversation = _live_chat(world)
    before = conversation.updated_at
    seen = conversation_mark_seen_by_visitor(
        visitor_id=visitor.pk, conversation_public_id=str(conversation.public_id), seq=999
    )
    conversation.refresh_from_db()
    assert seen == conversation.last_seq == conversation.visitor_seen_seq
    assert conversation.updated_at == before  # being seen is no activity (the Open tab sorts by it)


def test_seen_of_someone_elses_conversation_changes_nothing(world: Personas) -> None:
    _, conversation = _live_chat(world)
    stranger, _ = new_visitor(world.chatbot)
    other_workspace_visitor, _ = new_visitor(world.other_chatbot)
    for intruder in (stranger, other_workspace_visitor):
        assert (
            conversation_mark_seen_by_visitor(
                visitor_id=intruder.pk, conversation_public_id=str(conversation.public_id), seq=2
            )
            is None
        )
    for bad in ("not-a-uuid", str(uuid.uuid4())):
        assert conversation_mark_seen_by_visitor(visitor_id=stranger.pk, conversation_public_id=bad, seq=1) is None
    conversation.refresh_from_db()
    assert conversation.visitor_seen_seq == 0


# --- read (the agent) -------------------------------------------------------------------------


def test_read_is_one_upsert_per_batch_forward_only_and_told_to_the_agent_only(world: Personas) -> None:
    _, conversation = _live_chat(world)
    key = str(conversation.public_id)
    with CaptureQueriesContext(connection) as queries:
        frames = _heard(
            console_user_group(world.teammate.pk),
            lambda: conversation_mark_read(user_id=world.teammate.pk, conversation_public_id=key, seq=3),
        )
    assert len(_writes(queries)) == 1 and "ON CONFLICT" in _writes(queries)[0]
    assert frames == [{"type": "read", "conversation": key, "last_read_seq": 3}]

    assert conversation_mark_read(user_id=world.teammate.pk, conversation_public_id=key, seq=2) is None
    assert conversation_mark_read(user_id=world.teammate.pk, conversation_public_id=key, seq=10_000) == (
        conversation.last_seq
    )
    read = ConversationRead.objects.get(user=world.teammate, conversation=conversation)
    assert read.last_read_seq == conversation.last_seq
    assert not ConversationRead.objects.filter(user=world.owner).exists()  # per agent


def test_read_of_another_workspaces_conversation_is_refused(world: Personas) -> None:
    _, conversation = _live_chat(world)
    key = str(conversation.public_id)
    assert conversation_mark_read(user_id=world.outsider.pk, conversation_public_id=key, seq=2) is None
    assert conversation_mark_read(user_id=world.outsider.pk, conversation_public_id="nope", seq=2) is None
    assert not ConversationRead.objects.exists()


def test_unread_counts_visitor_messages_after_the_agents_mark(world: Personas) -> None:
    visitor, conversation = _live_chat(world)  # 1 visitor message, then 2 replies
    say(visitor, conversation, "Are you there?")
    say(visitor, conversation, "Hello?")
    filters = selectors.ConversationFilters(tab=selectors.TAB_HANDOFF)

    def unread(user_id: int) -> int:
        rows = selectors.conversation_list(workspace_id=world.workspace.pk, filters=filters, user_id=user_id)
        return next(r.unread for r in rows if r.pk == conversation.pk)  # type: ignore[attr-defined]

    assert unread(world.teammate.pk) == 3
    conversation.refresh_from_db()
    conversation_mark_read(user_id=world.teammate.pk, conversation_public_id=str(conversation.public_id), seq=6)
    assert unread(world.teammate.pk) == 1  # "Hello?" came after the mark
    assert unread(world.owner.pk) == 3  # the owner's own mark is untouched


def test_the_list_is_one_query_whatever_the_number_of_rows(world: Personas) -> None:
    client = Client()
    client.force_login(world.teammate)

    def list_queries() -> int:
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/dashboard/conversations/?tab=open&fragment=1")
        assert response.status_code == 200
        return len(queries.captured_queries)

    for _ in range(2):
        visitor, conversation = new_visitor(world.chatbot)
        say(visitor, conversation, "Hi")
    few = list_queries()
    for _ in range(6):
        visitor, conversation = new_visitor(world.chatbot)
        say(visitor, conversation, "Hi")
        say(visitor, conversation, "Anyone?")
    assert list_queries() == few
    html = client.get("/dashboard/conversations/?tab=open&fragment=1").content.decode()
    assert html.count('data-unread="2"') >= 6  # each unread count is on its row


# --- typing -----------------------------------------------------------------------------------


def test_agent_typing_reaches_the_visitor_only_from_the_claimant_and_writes_nothing(world: Personas) -> None:
    visitor, conversation = _live_chat(world)
    key = str(conversation.public_id)
    with CaptureQueriesContext(connection) as queries:
        target = agent_typing_target(user_id=world.owner.pk, conversation_public_id=key)
        refused = [
            agent_typing_target(user_id=user.pk, conversation_public_id=key)
            for user in (world.teammate, world.outsider)
        ]
    assert _writes(queries) == []
    assert len(queries.captured_queries) == 3  # one read each
    assert target is not None and refused == [None, None]
    assert agent_typing_frame(target, on=True) == {
        "type": "typing",
        "conversation": key,
        "author": "agent",
        "on": True,
        "agent": "Alice",  # the public name, as the widget's state and events show it
    }
    assert target.visitor == str(visitor.public_id)


def test_agent_typing_before_the_claim_reaches_nobody(world: Personas) -> None:
    visitor, conversation = new_visitor(world.chatbot)
    say(visitor, conversation, "Hello")
    request(visitor, conversation)
    assert agent_typing_target(user_id=world.owner.pk, conversation_public_id=str(conversation.public_id)) is None


def _preview(bot: Chatbot, on: bool) -> None:
    Chatbot.objects.filter(pk=bot.pk).update(typing_preview=on)


def test_visitor_typing_text_is_dropped_unless_the_owner_turned_the_preview_on(world: Personas) -> None:
    visitor, conversation = _live_chat(world)
    key = str(conversation.public_id)
    with CaptureQueriesContext(connection) as queries:
        found = live.widget_typing_frame(visitor_id=visitor.pk, conversation=key, on=True, text="my card is 4242")
    assert _writes(queries) == [] and len(queries.captured_queries) == 1
    assert found == (conversation_group(key), {"type": "typing", "conversation": key, "author": "visitor", "on": True})

    _preview(world.chatbot, True)
    _, frame = live.widget_typing_frame(visitor_id=visitor.pk, conversation=key, on=True, text="x" * 5000) or ("", {})
    assert frame["text"] == "x" * live.PREVIEW_MAX_CHARS  # bounded
    _, stopped = live.widget_typing_frame(visitor_id=visitor.pk, conversation=key, on=False, text="left over") or (
        "",
        {},
    )
    assert "text" not in stopped


def test_visitor_typing_reaches_nobody_outside_a_handoff_or_someone_elses_conversation(world: Personas) -> None:
    visitor, conversation = new_visitor(world.chatbot)  # talking to the AI
    assert (
        live.widget_typing_frame(visitor_id=visitor.pk, conversation=str(conversation.public_id), on=True, text="")
        is None
    )
    _, live_conversation = _live_chat(world)
    stranger, _ = new_visitor(world.other_chatbot)
    assert (
        live.widget_typing_frame(
            visitor_id=stranger.pk, conversation=str(live_conversation.public_id), on=True, text=""
        )
        is None
    )


def test_the_http_twins_publish_typing_without_a_write_and_mark_seen(world: Personas, monkeypatch) -> None:
    visitor, conversation = _live_chat(world)
    key = str(conversation.public_id)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {visitor_token(visitor)}")

    def post_typing() -> Any:
        return client.post(
            "/api/widget/typing", {"conversation": key, "on": True, "text": "secret"}, content_type="application/json"
        )

    with CaptureQueriesContext(connection) as queries:
        frames = _heard(conversation_group(key), lambda: post_typing())
    assert _writes(queries) == []
    assert frames == [{"type": "typing", "conversation": key, "author": "visitor", "on": True}]  # preview off

    monkeypatch.setattr(live, "TYPING_PER_MINUTE", 2)
    statuses = [post_typing().status_code for _ in range(4)]
    assert 429 in statuses

    seen = client.post("/api/widget/seen", {"conversation": key, "seq": 3}, content_type="application/json")
    assert seen.status_code == 200 and seen.json() == {"seen_seq": 3}
    stale = client.post("/api/widget/seen", {"conversation": key, "seq": 2}, content_type="application/json")
    assert stale.json() == {"seen_seq": None}


def test_the_settings_page_offers_the_preview_off_by_default_and_saves_it(world: Personas) -> None:
    client = Client()
    client.force_login(world.owner)
    html = client.get("/dashboard/settings/").content.decode()
    assert "Show agents what the visitor is typing before they send it" in html
    assert "Off by default" in html
    assert world.chatbot.typing_preview is False

    chatbot = str(world.chatbot.pk)
    response = client.post("/dashboard/settings/", handoff_settings_form(chatbot=chatbot, typing_preview="on"))
    assert response.status_code == 302
    world.chatbot.refresh_from_db()
    assert world.chatbot.typing_preview is True
    frame = Client().get(f"/widget/frame/{world.chatbot.public_key}/?origin=http://testserver").content.decode()
    assert '"typingPreview": true' in frame  # the widget sends the text only then
    client.post("/dashboard/settings/", handoff_settings_form(chatbot=chatbot))  # unchecked: off again
    world.chatbot.refresh_from_db()
    assert world.chatbot.typing_preview is False


# --- review fixes -----------------------------------------------------------------------------


def _visitor_messages(conversation: Conversation, count: int) -> None:
    """``count`` visitor messages appended at once (the event log's rows, as the services write them)."""
    first = conversation.last_seq + 1
    Event.objects.bulk_create(
        Event(conversation=conversation, seq=seq, kind="message", author=Event.Author.VISITOR, text=f"#{seq}")
        for seq in range(first, first + count)
    )
    Conversation.objects.filter(pk=conversation.pk).update(last_seq=first + count - 1)


def test_the_unread_count_stops_at_100_shown_as_99_plus_and_the_list_stays_one_query(world: Personas) -> None:
    client = Client()
    client.force_login(world.teammate)

    def list_page() -> tuple[int, str]:
        with CaptureQueriesContext(connection) as queries:
            response = client.get("/dashboard/conversations/?tab=open&fragment=1")
        assert response.status_code == 200
        return len(queries.captured_queries), response.content.decode()

    flooded_visitor, flooded = new_visitor(world.chatbot)
    say(flooded_visitor, flooded, "Hi")
    few_visitor, few_conversation = new_visitor(world.chatbot)
    say(few_visitor, few_conversation, "Hello")
    before, _ = list_page()
    flooded.refresh_from_db()
    _visitor_messages(flooded, 250)

    after, html = list_page()
    assert after == before  # the count is inside the list's one query, however many rows it counts
    assert 'data-unread="100"' in html and ">99+<" in html  # counted up to the cap, shown as 99+
    assert 'data-unread="1"' in html  # a small count is shown as it is
    rows = selectors.conversation_list(
        workspace_id=world.workspace.pk,
        filters=selectors.ConversationFilters(tab=selectors.TAB_OPEN),
        user_id=world.teammate.pk,
    )
    counts = {r.pk: r.unread for r in rows}  # type: ignore[attr-defined]
    assert (counts[flooded.pk], counts[few_conversation.pk]) == (unread.UNREAD_CAP, 1)


def test_the_unread_count_has_a_partial_index_of_visitor_messages() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'event_visitor_msg_seq'")
        (definition,) = cursor.fetchone()
    assert "(conversation_id, seq)" in definition
    assert "'visitor'" in definition and "'message'" in definition  # only what the unread count counts


def test_typing_text_over_its_limit_is_invalid_input_and_its_budget_has_its_own_words(
    world: Personas, monkeypatch
) -> None:
    visitor, conversation = _live_chat(world)
    client = Client(HTTP_AUTHORIZATION=f"Bearer {visitor_token(visitor)}")
    key = str(conversation.public_id)
    too_long = client.post(
        "/api/widget/typing", {"conversation": key, "on": True, "text": "x" * 12_001}, content_type="application/json"
    )
    assert too_long.status_code == 422 and too_long.json()["code"] == "invalid_input"  # not "message_too_long"
    message = client.post(
        "/api/widget/messages",
        {"client_id": "m-1", "text": "x" * (settings.MESSAGE_MAX_LENGTH + 1)},
        content_type="application/json",
    )
    assert (message.status_code, message.json()["code"]) == (413, "message_too_long")  # messages keep theirs

    monkeypatch.setattr(live, "TYPING_PER_MINUTE", 1)
    answers = [
        client.post("/api/widget/typing", {"conversation": key, "on": True}, content_type="application/json")
        for _ in range(2)
    ]
    assert [a.status_code for a in answers] == [204, 429]
    assert answers[1].json()["code"] == "rate_limited"
    assert "typing updates too fast" in answers[1].json()["detail"]
