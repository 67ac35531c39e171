"""Streamed CSV and JSON exports of whole threads (agent replies included).

Memory stays flat whatever the size: conversations and their events are read through two
server-side cursors (``.iterator(chunk_size=…)``) in the same order and merged as they stream, and
output leaves in chunks of about 64 KB. Nothing here builds the whole export in memory.
"""

from __future__ import annotations

import csv
import json
import logging
from collections.abc import AsyncIterator, Iterable, Iterator
from datetime import datetime
from typing import Any, cast

from asgiref.sync import sync_to_async
from django.db.models import QuerySet
from django.http import StreamingHttpResponse
from django.utils import timezone

from conversations.models import Conversation, Event

logger = logging.getLogger(__name__)

CHUNK_ROWS = 2000
CHUNK_BYTES = 64 * 1024
# A spreadsheet treats a cell starting with one of these as a formula (CSV injection). Excel and
# LibreOffice skip leading whitespace before deciding, and Excel in East Asian locales reads the
# full-width forms (U+FF1D, U+FF0B, U+FF0D, U+FF20) as the ASCII ones: both are checked, after the
# whitespace.
FORMULA_PREFIXES = ("=", "+", "-", "@", "\uff1d", "\uff0b", "\uff0d", "\uff20")
# A leading tab or carriage return can break the cell out of its column in some importers.
CONTROL_PREFIXES = ("\t", "\r")
# Not translated (issue 17): CSV/JSON column headers and keys are machine-readable field names, data for
# spreadsheets and imports (stable whatever the console language), not UI text; so is INCOMPLETE_NOTICE.
CSV_HEADER = (
    "conversation",
    "chatbot",
    "conversation_status",
    "conversation_started_at",
    "visitor",
    "visitor_phone",
    "seq",
    "created_at",
    "author",
    "agent",
    "kind",
    "text",
)
_CONVERSATION_FIELDS = (
    "pk",
    "public_id",
    "chatbot__name",
    "status",
    "created_at",
    "closed_at",
    "lead",
    "visitor__public_id",
    "visitor__locale",
    "visitor__current_page",
    "visitor__first_seen_at",
    "handoff__status",
    "handoff__trigger",
    "handoff__requested_at",
    "handoff__claimed_at",
    "handoff__claimed_by__username",
    "handoff__resolved_at",
)
_EVENT_FIELDS = ("conversation_id", "seq", "created_at", "author", "agent_name", "kind", "text", "data")


def csv_safe(value: object) -> str:
    """A cell a spreadsheet shows as text: ``=1+1`` → ``'=1+1``, `` \n@SUM(A1)`` → ``' \n@SUM(A1)``."""
    text = "" if value is None else str(value)
    if text.startswith(CONTROL_PREFIXES) or text.lstrip().startswith(FORMULA_PREFIXES):
        return "'" + text
    return text


def _iso(value: datetime | None) -> str | None:
    return value.isoformat().replace("+00:00", "Z") if value is not None else None


def _threads(conversations: QuerySet[Conversation]) -> Iterator[tuple[dict[str, Any], Iterator[tuple[Any, ...]]]]:
    """(conversation row, its events) for each conversation, both streams read chunk by chunk.

    Both cursors are ordered by conversation id, so the events stream is consumed in step with the
    conversations stream: a merge join that never holds more than one chunk of each.
    """
    ordered = conversations.order_by("pk")
    rows = ordered.values(*_CONVERSATION_FIELDS).iterator(chunk_size=CHUNK_ROWS)
    events = (
        Event.objects.filter(conversation__in=ordered.values("pk"))
        .order_by("conversation_id", "seq")
        .values_list(*_EVENT_FIELDS)
        .iterator(chunk_size=CHUNK_ROWS)
    )
    lookahead: list[tuple[Any, ...]] = []  # at most one event read ahead of its conversation

    def thread_events(conversation_pk: int) -> Iterator[tuple[Any, ...]]:
        while True:
            if lookahead:
                event = lookahead.pop()
            else:
                try:
                    event = next(events)
                except StopIteration:
                    return
            if event[0] < conversation_pk:
                continue  # its conversation left the filter between the two reads
            if event[0] > conversation_pk:
                lookahead.append(event)
                return
            yield event

    for row in rows:
        thread = thread_events(row["pk"])
        yield row, thread
        for _ in thread:  # a caller that stopped early: skip the rest, to stay in step
            pass


def _chunked(parts: Iterable[str]) -> Iterator[bytes]:
    buffer: list[str] = []
    size = 0
    for part in parts:
        buffer.append(part)
        size += len(part)
        if size >= CHUNK_BYTES:
            yield "".join(buffer).encode()
            buffer, size = [], 0
    if buffer:
        yield "".join(buffer).encode()


class _Line:
    """A file-like sink for ``csv.writer`` that hands back the line just written."""

    def write(self, value: str) -> str:
        return value


def csv_lines(conversations: QuerySet[Conversation]) -> Iterator[str]:
    writer = csv.writer(_Line())
    yield "\ufeff"  # a BOM so Excel reads UTF-8
    yield writer.writerow(CSV_HEADER)
    for row, events in _threads(conversations):
        fixed = (
            str(row["public_id"]),
            csv_safe(row["chatbot__name"]),
            row["status"],
            _iso(row["created_at"]),
            str(row["visitor__public_id"]),
            csv_safe((row["lead"] or {}).get("phone", "")),
        )
        for _, seq, created_at, author, agent_name, kind, text, _data in events:
            yield writer.writerow((*fixed, seq, _iso(created_at), author, csv_safe(agent_name), kind, csv_safe(text)))


def _dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def json_parts(conversations: QuerySet[Conversation], *, workspace: str) -> Iterator[str]:
    yield '{"workspace":' + _dumps(workspace) + ',"exported_at":' + _dumps(_iso(timezone.now()))
    yield ',"conversations":['
    for index, (row, events) in enumerate(_threads(conversations)):
        handoff = None
        if row["handoff__status"]:
            handoff = {
                "status": row["handoff__status"],
                "trigger": row["handoff__trigger"],
                "requested_at": _iso(row["handoff__requested_at"]),
                "claimed_at": _iso(row["handoff__claimed_at"]),
                "claimed_by": row["handoff__claimed_by__username"],
                "resolved_at": _iso(row["handoff__resolved_at"]),
            }
        head = {
            "conversation": str(row["public_id"]),
            "chatbot": row["chatbot__name"],
            "status": row["status"],
            "created_at": _iso(row["created_at"]),
            "closed_at": _iso(row["closed_at"]),
            "visitor": {
                "id": str(row["visitor__public_id"]),
                "locale": row["visitor__locale"],
                "current_page": row["visitor__current_page"] or None,
                "first_seen_at": _iso(row["visitor__first_seen_at"]),
            },
            "lead": row["lead"] or {},
            "handoff": handoff,
        }
        # The thread goes last so it can stream: open the object, then its events one by one.
        yield ("," if index else "") + _dumps(head)[:-1] + ',"events":['
        for position, (_, seq, created_at, author, agent_name, kind, text, data) in enumerate(events):
            event = {
                "seq": seq,
                "created_at": _iso(created_at),
                "author": author,
                "agent": agent_name or None,
                "kind": kind,
                "text": text,
                "data": data or {},
            }
            yield ("," if position else "") + _dumps(event)
        yield "]}"
    yield "]}\n"


INCOMPLETE_NOTICE = "export incomplete — an error interrupted it; export again"
# What ends a failed download in place of its rest. Chunks end on whole rows, so the CSV notice is a
# row of its own; the JSON document never got its closing brackets, and the notice after it keeps it
# from parsing (its outer object stays open whatever the cut) while telling a reader why.
INCOMPLETE_TRAILERS = {
    "csv": csv.writer(_Line()).writerow((INCOMPLETE_NOTICE,)).encode(),
    "json": ("\n" + _dumps({"error": "export_incomplete", "detail": INCOMPLETE_NOTICE}) + "\n").encode(),
}


def _fail_closed(chunks: Iterator[bytes], *, trailer: bytes) -> Iterator[bytes]:
    """End the download at the first error instead of raising inside the response.

    An exception escaping a streaming response leaves the server without a final chunk to send (the
    client waited for good) and Django without its ``request_finished``, which returns the database
    connection. The stream ends instead, with ``trailer`` saying the file is incomplete: the status
    line (200) went out with the first chunk, so this is the only way left to tell the reader. The
    error is logged; bad input is refused before the stream starts, so this is a database or code
    fault.
    """
    try:
        yield from chunks
    except Exception:
        logger.exception("export stream failed; the download was ended early")
        yield trailer


def _next_chunk(iterator: Iterator[bytes]) -> bytes | None:
    try:
        return next(iterator)
    except StopIteration:
        return None


class ExportResponse(StreamingHttpResponse):
    """A streaming response that also streams under ASGI.

    Django's ASGI handler collects a *synchronous* iterator into a list before sending it (see
    ``StreamingHttpResponse.__aiter__``), which would load the whole export into memory. Here each
    chunk is pulled through ``sync_to_async`` instead; thread-sensitive mode keeps every pull on the
    request's thread, where the view's database connection and its server-side cursors live.
    """

    async def __aiter__(self) -> AsyncIterator[bytes]:
        iterator = iter(cast(Iterator[bytes], self.streaming_content))
        pull = sync_to_async(_next_chunk, thread_sensitive=True)
        while True:
            chunk = await pull(iterator)
            if chunk is None:
                return
            yield chunk


def export_response(
    conversations: QuerySet[Conversation], *, fmt: str, filename: str, workspace: str
) -> ExportResponse:
    if fmt == "csv":
        chunks = _chunked(csv_lines(conversations))
        content_type = "text/csv; charset=utf-8"
    else:
        chunks = _chunked(json_parts(conversations, workspace=workspace))
        content_type = "application/json; charset=utf-8"
    trailer = INCOMPLETE_TRAILERS["csv" if fmt == "csv" else "json"]
    response = ExportResponse(_fail_closed(chunks, trailer=trailer), content_type=content_type)
    response["Content-Disposition"] = f'attachment; filename="{filename}.{fmt}"'
    response["Cache-Control"] = "no-store"
    response["X-Content-Type-Options"] = "nosniff"
    return response
