"""Client → server frames of the console socket, validated with pydantic."""

from __future__ import annotations

import json
import re
from typing import Annotated, Literal
from uuid import UUID

from django.conf import settings
from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pivra.errors import DomainError
from pivra.inputs import MAX_SEQ, clean_client_id

MAX_FRAME_BYTES = 4096


# A client id as JSON writes it: a quoted string of at most 64 visible ASCII characters (escaped, a
# few more); found in the text of a frame too large to be parsed, so the page's answer names it.
_CLIENT_ID_IN_TEXT = re.compile(r'"client_id"\s*:\s*("(?:[^"\\\x00-\x1f]|\\.){1,130}")')


def max_frame_bytes(frame_type: str) -> int:
    """A reply carries a message of up to ``MESSAGE_MAX_LENGTH`` characters — up to 12 bytes each once
    JSON-escaped (a character beyond the BMP is a surrogate pair, ``\\uXXXX\\uXXXX``, and counts as
    one); every other frame is small."""
    if frame_type in ("reply", "note"):  # a note is bounded as a message is (conversations.notes)
        return max(MAX_FRAME_BYTES, 12 * int(settings.MESSAGE_MAX_LENGTH) + 512)
    return MAX_FRAME_BYTES


def client_id_of(raw: object) -> str | None:
    """The frame's client id when it has a well-formed one (an error about the frame then names it,
    and the page need not wait for an answer that will never come)."""
    client_id = raw.get("client_id") if isinstance(raw, dict) else None
    if not isinstance(client_id, str):
        return None
    try:
        return clean_client_id(client_id, required=True)
    except DomainError:
        return None


def client_id_in_text(text: str) -> str | None:
    """``client_id_of`` for a frame's text that is not parsed (it is too large)."""
    found = _CLIENT_ID_IN_TEXT.search(text)
    if found is None:
        return None
    try:
        return client_id_of({"client_id": json.loads(found.group(1))})
    except ValueError:
        return None


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Watch(_Frame):
    """Follow one conversation live; events after ``last_seq`` are replayed from the database first."""

    type: Literal["watch"]
    conversation: UUID
    last_seq: int = Field(default=0, ge=0, le=MAX_SEQ)


class Unwatch(_Frame):
    type: Literal["unwatch"]


class Ping(_Frame):
    type: Literal["ping"]


class Reply(_Frame):
    """The agent's reply, as ``POST /api/console/handoffs/{id}/reply``: the text and client id are
    checked by the service (the same refusals as over HTTP); answered with ``ack`` or ``error``."""

    type: Literal["reply"]
    conversation_id: UUID
    text: str
    client_id: str


class Claim(_Frame):
    """As ``POST /api/console/handoffs/{id}/claim``; ``client_id`` only names the answer."""

    type: Literal["claim"]
    conversation_id: UUID
    client_id: str = Field(min_length=1, max_length=64)


class Release(_Frame):
    """As ``POST /api/console/handoffs/{id}/release``."""

    type: Literal["release"]
    conversation_id: UUID
    client_id: str = Field(min_length=1, max_length=64)


class Transfer(_Frame):
    """As ``POST /api/console/handoffs/{id}/transfer`` with ``{"to_user_id"}``."""

    type: Literal["transfer"]
    conversation_id: UUID
    to_user_id: int = Field(ge=1, le=MAX_SEQ)
    client_id: str = Field(min_length=1, max_length=64)


class TakeOver(_Frame):
    """As ``POST /api/console/handoffs/{id}/take-over``."""

    type: Literal["take_over"]
    conversation_id: UUID
    client_id: str = Field(min_length=1, max_length=64)


class Accept(_Frame):
    """Accept a transfer or routing offer: a claim (``POST …/claim``), answered as the claim is."""

    type: Literal["accept"]
    conversation_id: UUID
    client_id: str = Field(min_length=1, max_length=64)


class Decline(_Frame):
    """As ``POST /api/console/handoffs/{id}/decline``."""

    type: Literal["decline"]
    conversation_id: UUID
    client_id: str = Field(min_length=1, max_length=64)


class AddNote(_Frame):
    """An internal note, as ``POST /api/console/conversations/{id}/notes`` (``conversations.notes``)."""

    type: Literal["note"]
    conversation_id: UUID
    text: str
    client_id: str


class Typing(_Frame):
    """The agent is typing a reply (``on``) or stopped: relayed to the visitor, never stored, never answered
    (``pivra.console.live_marks``)."""

    type: Literal["typing"]
    conversation_id: UUID
    on: bool


class Read(_Frame):
    """The agent has read the conversation up to ``seq`` (its page open and visible): one upsert, never
    answered (``conversations.read_state``)."""

    type: Literal["read"]
    conversation_id: UUID
    seq: int = Field(ge=1, le=MAX_SEQ)


# The frames that run a service (``pivra.console.commands``), as a tuple for isinstance.
COMMANDS = (Reply, Claim, Release, Transfer, TakeOver, Accept, Decline, AddNote)
Command = Reply | Claim | Release | Transfer | TakeOver | Accept | Decline | AddNote
ClientFrame = Annotated[
    Watch | Unwatch | Ping | Typing | Read | Reply | Claim | Release | Transfer | TakeOver | Accept | Decline | AddNote,
    Field(discriminator="type"),
]
client_frame_adapter: TypeAdapter[
    Watch | Unwatch | Ping | Typing | Read | Reply | Claim | Release | Transfer | TakeOver | Accept | Decline | AddNote
] = TypeAdapter(ClientFrame)
KNOWN_TYPES = frozenset(
    {"watch", "unwatch", "ping", "typing", "read", "reply", "claim", "release", "transfer", "take_over", "accept"}
    | {"decline", "note"}
)
