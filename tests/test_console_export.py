"""Exports: whole threads with agent replies, CSV injection neutralised, and streamed with flat memory."""

from __future__ import annotations

import csv
import io
import json
import tracemalloc
from collections.abc import Iterator
from typing import cast

import pytest
from django.db import connection
from django.test import Client
from django.utils import timezone

from conversations.ai import conversation_reply_with_ai
from conversations.export import ExportResponse, csv_safe
from conversations.models import Conversation, Event
from handoff.transitions.claim import handoff_claim
from handoff.transitions.lead import lead_capture
from handoff.transitions.reply import handoff_reply
from handoff.transitions.resolve import handoff_resolve
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request, say

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _body(response) -> str:
    assert isinstance(response, ExportResponse)
    return b"".join(cast(Iterator[bytes], response.streaming_content)).decode("utf-8-sig")


def _full_thread(personas: Personas) -> Conversation:
    """Visitor, AI, handoff, claim, agent replies, a lead, and the resolve: every kind of event."""
    enable_handoff(personas.chatbot)
    personas.teammate.first_name = "Alice"
    personas.teammate.save()
    visitor, conversation = new_visitor(personas.chatbot)
    asked = say(visitor, conversation, "Where is my order?")
    conversation_reply_with_ai(conversation_id=conversation.pk, reply_to_seq=asked.event.seq)
    request(visitor, conversation)
    say(visitor, conversation, "Still there?")
    key = str(conversation.public_id)
    handoff_claim(agent=personas.teammate, conversation_public_id=key)
    handoff_reply(agent=personas.teammate, conversation_public_id=key, text="Hi, Alice here.", client_id="a1")
    handoff_reply(
        agent=personas.teammate, conversation_public_id=key, text="It ships today.\nTracking soon.", client_id="a2"
    )
    lead_capture(visitor=visitor, conversation_public_id=key, phone="+44 7911 123456")
    handoff_resolve(agent=personas.teammate, conversation_public_id=key)
    conversation.refresh_from_db()
    return conversation


def test_csv_cells_that_a_spreadsheet_would_run_are_neutralised() -> None:
    for dangerous in ("=1+1", "+cmd|' /C calc'!A0", "-2+3", "@SUM(A1)", "\tx", "\rx"):
        assert csv_safe(dangerous) == "'" + dangerous
    assert csv_safe("plain text") == "plain text"
    assert csv_safe("a=b") == "a=b"
    assert csv_safe(None) == ""


@pytest.mark.parametrize(
    "dangerous",
    [
        " =1+1",
        "  +cmd|' /C calc'!A0",
        "\n-2+3",
        "\r\n@SUM(A1)",
        '\t =HYPERLINK("http://evil.example")',
        "\u3000=1+1",  # an ideographic space is whitespace to a spreadsheet too
        "\uff1d1+1",  # the full-width signs, which Excel reads as ASCII ones in East Asian locales
        "\uff0bcmd",
        "\uff0d2",
        "\uff20SUM(A1)",
        " \uff1d1+1",
        "\tplain",
        "\rplain",
    ],
)
def test_csv_cells_hiding_a_formula_behind_whitespace_or_full_width_signs_are_neutralised(dangerous: str) -> None:
    assert csv_safe(dangerous) == "'" + dangerous


def test_csv_cells_with_signs_after_the_first_word_are_left_alone() -> None:
    for harmless in (" plain", "\nline two", "x \uff1d y", "5-3", "mail@example.com"):
        assert csv_safe(harmless) == harmless


def test_the_csv_export_neutralises_messages_and_agent_names(personas: Personas) -> None:
    enable_handoff(personas.chatbot)
    personas.teammate.first_name = "=Mallory"
    personas.teammate.save()
    visitor, conversation = new_visitor(personas.chatbot)
    key = str(conversation.public_id)
    for text in ('=HYPERLINK("http://evil.example","click")', "+1+1", "-1", "@SUM(1)"):
        say(visitor, conversation, text)
    request(visitor, conversation)
    handoff_claim(agent=personas.teammate, conversation_public_id=key)
    handoff_reply(agent=personas.teammate, conversation_public_id=key, text="=2*3", client_id="m1")

    body = _body(_client(personas.owner).get(f"/dashboard/conversations/{key}/export.csv"))
    rows = list(csv.DictReader(io.StringIO(body)))
    texts = [row["text"] for row in rows if row["kind"] == "message"]
    assert texts == ['\'=HYPERLINK("http://evil.example","click")', "'+1+1", "'-1", "'@SUM(1)", "'=2*3"]
    assert {row["agent"] for row in rows if row["author"] == "agent"} == {"'=Mallory"}
    for row in rows:
        for value in row.values():
            assert not value.startswith(("=", "+", "-", "@", "\t", "\r")), row


def test_exports_hold_every_event_of_the_thread_including_agent_replies(personas: Personas) -> None:
    conversation = _full_thread(personas)
    expected = list(conversation.events.order_by("seq").values_list("seq", "author", "text"))
    assert {author for _, author, _ in expected} == {"visitor", "ai", "system", "agent"}
    key = conversation.public_id
    client = _client(personas.owner)

    response = client.get(f"/dashboard/conversations/{key}/export.csv")
    assert response["Content-Type"].startswith("text/csv")
    assert "attachment" in response["Content-Disposition"]
    rows = list(csv.DictReader(io.StringIO(_body(response))))
    assert [(int(r["seq"]), r["author"], r["text"]) for r in rows] == [(s, a, csv_safe(t)) for s, a, t in expected]
    assert {r["conversation"] for r in rows} == {str(key)}
    assert {r["conversation_status"] for r in rows} == {"closed"}
    assert {r["visitor_phone"] for r in rows} == {"'+447911123456"}
    assert [r["agent"] for r in rows if r["author"] == "agent"] == ["Alice", "Alice"]

    document = json.loads(_body(client.get(f"/dashboard/conversations/{key}/export.json")))
    (thread,) = document["conversations"]
    assert thread["conversation"] == str(key)
    assert thread["status"] == "closed"
    assert thread["lead"]["phone"] == "+447911123456"
    assert thread["handoff"]["status"] == "resolved"
    assert thread["handoff"]["claimed_by"] == personas.teammate.username
    assert [(e["seq"], e["author"], e["text"]) for e in thread["events"]] == expected
    assert [e["agent"] for e in thread["events"] if e["author"] == "agent"] == ["Alice", "Alice"]


def test_a_filtered_set_exports_each_matching_thread_whole(personas: Personas) -> None:
    closed = _full_thread(personas)
    visitor, open_one = new_visitor(personas.chatbot)
    say(visitor, open_one, "A question about tents")
    _, untouched = new_visitor(personas.chatbot)  # empty: not listed, not exported
    client = _client(personas.owner)

    document = json.loads(_body(client.get("/dashboard/conversations/export.json", {"tab": "open"})))
    exported = {c["conversation"]: c for c in document["conversations"]}
    assert set(exported) == {str(closed.public_id), str(open_one.public_id)}
    assert len(exported[str(closed.public_id)]["events"]) == closed.last_seq
    assert str(untouched.public_id) not in exported

    only_closed = json.loads(
        _body(client.get("/dashboard/conversations/export.json", {"tab": "open", "status": "closed"}))
    )
    assert [c["conversation"] for c in only_closed["conversations"]] == [str(closed.public_id)]

    searched = list(
        csv.DictReader(
            io.StringIO(_body(client.get("/dashboard/conversations/export.csv", {"tab": "open", "q": "tents"})))
        )
    )
    assert {r["conversation"] for r in searched} == {str(open_one.public_id)}


def _server_side_cursors() -> list[str]:
    with connection.cursor() as cursor:
        cursor.execute("SELECT name FROM pg_cursors WHERE name LIKE '_django_curs_%%'")
        return [name for (name,) in cursor.fetchall()]


def test_an_export_of_100k_messages_streams_with_flat_memory(personas: Personas) -> None:
    visitor, _ = new_visitor(personas.chatbot)
    conversations = [Conversation.objects.create(chatbot=personas.chatbot, visitor=visitor) for _ in range(100)]
    text = "A fairly ordinary visitor message about an order, its delivery and a refund. " * 4  # ~300 chars
    now = timezone.now()
    per_conversation = 1000

    def events() -> Iterator[Event]:
        for conversation in conversations:
            for seq in range(1, per_conversation + 1):
                yield Event(conversation=conversation, seq=seq, author="visitor", text=text, created_at=now)

    batch: list[Event] = []
    for event in events():
        batch.append(event)
        if len(batch) == 10_000:
            Event.objects.bulk_create(batch)
            batch = []
    Conversation.objects.filter(pk__in=[c.pk for c in conversations]).update(last_seq=per_conversation)
    assert Event.objects.filter(conversation__chatbot=personas.chatbot).count() == 100_000

    client = _client(personas.owner)
    for fmt in ("csv", "json"):
        response = client.get(f"/dashboard/conversations/export.{fmt}", {"tab": "open"})
        assert isinstance(response, ExportResponse)
        assert response.streaming
        total = chunks = 0
        lines = 0
        tracemalloc.start()
        try:
            for chunk in cast(Iterator[bytes], response.streaming_content):
                total += len(chunk)
                chunks += 1
                lines += chunk.count(b"\n")
                if chunks == 2:
                    open_cursors = _server_side_cursors()
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        print(f"{fmt}: {total / 1e6:.1f} MB in {chunks} chunks, peak traced memory {peak / 1e6:.2f} MB")
        assert total > 30_000_000  # the whole export is large…
        assert peak < 25_000_000  # …but memory never held more than a few chunks of it
        assert peak < total / 4
        assert chunks > 100
        # Rows come through server-side cursors (psycopg's own buffers are invisible to tracemalloc).
        assert len(open_cursors) == 2, open_cursors
        if fmt == "csv":
            assert lines == 100_000 + 1  # a header and one line per message


async def test_under_asgi_an_export_is_pulled_chunk_by_chunk_not_collected_first() -> None:
    # Django's ASGI handler would turn a plain streaming response's sync iterator into a list first.
    produced: list[int] = []

    def parts() -> Iterator[bytes]:
        for n in range(3):
            produced.append(n)
            yield f"part{n}".encode()

    seen = [(chunk, list(produced)) async for chunk in ExportResponse(parts())]
    assert seen == [(b"part0", [0]), (b"part1", [0, 1]), (b"part2", [0, 1, 2])]
