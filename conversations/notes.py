"""Internal notes: what agents write for each other in a conversation's thread, never for the visitor.

A note is no ``Event``: every visitor channel (widget socket and its replay, SSE, the events API,
the transcript, exports, the AI's context) reads the event log, so a note kept out of it cannot reach
them. Its broadcast goes only to console sockets: the conversation's watchers
(``conversation_group``, which only console sockets join) and each mentioned member's own group —
never ``visitor_group``. ``after_seq`` places it in the thread among the events.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.urls import reverse
from django.utils.translation import gettext as _

from chatbots.models import Membership
from conversations.models import Conversation, Note
from pivra.console.revocation import console_user_group
from pivra.errors import Conflict, DomainError, NotFound
from pivra.ids import parse_uuid
from pivra.inputs import clean_client_id, clean_text
from pivra.realtime import conversation_group, send_on_commit
from pivra.widget.ratelimit import RateLimited, rate_limit_hit

logger = logging.getLogger(__name__)

NOTE_CLIENT_ID_CONSTRAINT = "note_unique_client_id"
# A note can @mention at most this many teammates (each is told live and by push).
MAX_MENTIONS = 20
# The excerpt a mention notice shows.
MENTION_EXCERPT = 160
# Live notices and pushes one author can send one mentioned teammate a minute (the notes are all kept).
MENTION_ALERTS_PER_MINUTE = 6
# Notes one agent may add over HTTP a minute (the console socket has its own command budget).
NOTES_PER_MINUTE = 60


def note_max_length() -> int:
    """As long as a message: the console socket's frame limit for a reply covers a note too."""
    return int(settings.MESSAGE_MAX_LENGTH)


@dataclass(frozen=True)
class NoteCreated:
    note: Note
    duplicate: bool
    # "@ann" when two members are called Ann: nobody was told through it (the page says "use @username").
    ambiguous_mentions: list[str] = field(default_factory=list)


def clean_note_text(text: str | None) -> str:
    limit = note_max_length()
    value = clean_text(text, field="text").strip()
    if not value:
        raise DomainError("note_empty", _("Write the note first."), status=422)
    if len(value) > limit:
        raise DomainError(
            "note_too_long", _("A note can be at most %(limit)d characters long.") % {"limit": limit}, status=413
        )
    return value


def note_create(*, conversation: Conversation, author: User, text: str, client_id: str | None) -> NoteCreated:
    """Only a member of the conversation's workspace may write a note; a resend with the same
    client id is stored once (the database's constraint has the last word in a race)."""
    text = clean_note_text(text)
    client_id = clean_client_id(client_id, required=False)
    try:
        return _create(conversation=conversation, author=author, text=text, client_id=client_id)
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None)
        if constraint != NOTE_CLIENT_ID_CONSTRAINT or client_id is None:
            raise
        existing = Note.objects.filter(conversation_id=conversation.pk, client_id=client_id).first()
        if existing is None:
            raise
        return _resent(existing, author=author, text=text)


def note_add(*, author: User, conversation_public_id: str, text: str, client_id: str | None) -> NoteCreated:
    """``note_create`` for a conversation named by its public id (the console API and socket): another
    workspace's conversation is not found, as it is for every console operation."""
    key = parse_uuid(conversation_public_id)
    conversation = (
        Conversation.objects.select_related("chatbot")
        .filter(public_id=key, chatbot__workspace__memberships__user_id=author.pk)
        .first()
        if key
        else None
    )
    if conversation is None:
        raise NotFound("conversation_not_found", _("No such conversation in your workspaces."))
    return note_create(conversation=conversation, author=author, text=text, client_id=client_id)


def note_ack(created: NoteCreated) -> dict[str, Any]:
    """What creating a note answers, over HTTP and over the console socket."""
    return {
        "client_id": created.note.client_id,
        "duplicate": created.duplicate,
        "note": note_body(created.note),
        "ambiguous_mentions": list(created.ambiguous_mentions),
    }


def _resent(existing: Note, *, author: User, text: str) -> NoteCreated:
    if existing.text != text or existing.author_id != author.pk:
        raise Conflict("client_id_reused", _("This client_id was already used for a different note."))
    return NoteCreated(note=existing, duplicate=True)


def _create(*, conversation: Conversation, author: User, text: str, client_id: str | None) -> NoteCreated:
    workspace_id = conversation.chatbot.workspace_id
    members: list[User] = []
    if "@" in text:  # only a note that may mention someone needs the workspace's members
        members = list(
            User.objects.filter(memberships__workspace_id=workspace_id, is_active=True)
            .only("id", "username", "first_name")
            .order_by("pk")
        )
        is_member = any(member.pk == author.pk for member in members)
    else:
        is_member = Membership.objects.filter(workspace_id=workspace_id, user_id=author.pk).exists()
    if not author.is_active or not is_member:
        raise NotFound("conversation_not_found", _("No such conversation in your workspaces."))
    mentions = mentions_in(text=text, members=members, author_id=author.pk)
    with transaction.atomic():
        if client_id is not None:
            existing = Note.objects.filter(conversation_id=conversation.pk, client_id=client_id).first()
            if existing is not None:
                return _resent(existing, author=author, text=text)
        # Read in the transaction: the note sits after every event committed before it.
        last_seq = Conversation.objects.filter(pk=conversation.pk).values_list("last_seq", flat=True).first()
        if last_seq is None:
            raise NotFound("conversation_not_found", _("No such conversation in your workspaces."))
        note = Note.objects.create(
            conversation_id=conversation.pk,
            author=author,
            author_name=_team_name(author),
            text=text,
            mentions=mentions.user_ids,
            after_seq=last_seq,
            client_id=client_id,
        )
        frame = note_frame(note, conversation)
        send_on_commit([conversation_group(conversation.public_id)], frame)
        told = _within_mention_budget(author_id=author.pk, user_ids=note.mentions)
        if told:
            notice = mention_frame(note, conversation)
            send_on_commit([console_user_group(user_id) for user_id in told], notice)
            _push_mentions(note_id=note.pk, conversation_id=conversation.pk)
    return NoteCreated(note=note, duplicate=False, ambiguous_mentions=mentions.ambiguous)


def _within_mention_budget(*, author_id: int, user_ids: list[int]) -> list[int]:
    """The mentioned members this author may still alert this minute: a flood of notes naming the
    same teammate alerts them ``MENTION_ALERTS_PER_MINUTE`` times, then the notes are only stored."""
    allowed: list[int] = []
    for user_id in user_ids:
        try:
            rate_limit_hit(bucket=f"mention:{author_id}:{user_id}", limit=MENTION_ALERTS_PER_MINUTE)
        except RateLimited:
            continue
        allowed.append(user_id)
    return allowed


def _push_mentions(*, note_id: int, conversation_id: int) -> None:
    """Browser/Web Push for the mentioned members (notifications app; it enqueues on commit)."""
    from notifications.services import notify_mention  # the notifications app reads notes, not the reverse

    notify_mention(note_id=note_id, conversation_id=conversation_id)


def _team_name(user: User) -> str:
    """The console's name for a teammate (as ``handoff.state.agent_display_name``)."""
    return str(user.get_short_name() or user.get_username())[:150]


@dataclass(frozen=True)
class Mentions:
    user_ids: list[int]
    # Names written after "@" that more than one member answers to (first names): nobody is told
    # through them; the agent is asked to use the @username.
    ambiguous: list[str]


def _handle_owners(members: Iterable[User]) -> dict[str, set[int]]:
    """What ``@`` may be followed by, each with the members it names: a username names its member
    alone (usernames are unique); a first name names every member who has it and no one's username."""
    by_username: dict[str, set[int]] = {}
    by_first_name: dict[str, set[int]] = {}
    for member in members:
        username = member.get_username().strip().lower()
        if username:
            by_username.setdefault(username, set()).add(member.pk)
        first_name = member.first_name.strip().lower()
        if first_name:
            by_first_name.setdefault(first_name, set()).add(member.pk)
    return {**{name: ids for name, ids in by_first_name.items() if name not in by_username}, **by_username}


_MENTION_START = re.compile(r"(?<![\w@])@")


def mentions_in(*, text: str, members: Iterable[User], author_id: int | None) -> Mentions:
    """The members ``@``-named in ``text``, in order of appearance, without the author. Only members
    count: any other ``@word`` is plain text. The longest name wins (``@ann.lee`` over ``@ann``), a
    name must end at a word boundary (``@annabel`` is not ``@ann``), and a name more than one member
    answers to names nobody (it is reported as ambiguous)."""
    candidates = sorted(_handle_owners(members).items(), key=lambda pair: (-len(pair[0]), pair[0]))
    lowered = text.lower()
    found: list[int] = []
    ambiguous: list[str] = []
    for match in _MENTION_START.finditer(lowered):
        start = match.end()
        for handle, user_ids in candidates:
            end = start + len(handle)
            if lowered.startswith(handle, start) and (end == len(lowered) or not _continues(lowered[end])):
                if len(user_ids) > 1:
                    if handle not in ambiguous:
                        ambiguous.append(handle)
                else:
                    (user_id,) = user_ids
                    if user_id != author_id and user_id not in found:
                        found.append(user_id)
                break
        if len(found) >= MAX_MENTIONS:
            break
    return Mentions(user_ids=found, ambiguous=ambiguous)


def mentioned_member_ids(*, text: str, members: Iterable[User], author_id: int | None) -> list[int]:
    """The ids of ``mentions_in``."""
    return mentions_in(text=text, members=members, author_id=author_id).user_ids


def _continues(char: str) -> bool:
    return char.isalnum() or char in "_-"


def notes_for_conversation(*, conversation: Conversation) -> list[Note]:
    """The conversation's notes in thread order (for its agents only)."""
    return list(Note.objects.filter(conversation_id=conversation.pk).order_by("after_seq", "created_at", "id"))


def note_body(note: Note) -> dict[str, Any]:
    return {
        "id": str(note.public_id),
        "after_seq": note.after_seq,
        "author_name": note.author_name,
        "text": note.text,
        "mentions": list(note.mentions),
        "client_id": note.client_id,
        "created_at": note.created_at.isoformat().replace("+00:00", "Z"),
    }


def note_frame(note: Note, conversation: Conversation) -> dict[str, Any]:
    """The console's ``note`` frame (never sent to a visitor group)."""
    return {"type": "note", "conversation": str(conversation.public_id), "note": note_body(note)}


def mention_frame(note: Note, conversation: Conversation) -> dict[str, Any]:
    """The ``note.mention`` notice for a mentioned member's console sockets."""
    text = note.text if len(note.text) <= MENTION_EXCERPT else note.text[: MENTION_EXCERPT - 1] + "…"
    return {
        "type": "note.mention",
        "conversation": str(conversation.public_id),
        "note": {"id": str(note.public_id), "author_name": note.author_name, "text": text},
        # Through the notifications app's redirect: it switches to the conversation's workspace first
        # (the mentioned agent may be looking at another of theirs).
        "url": reverse("dashboard:notification-open", args=[conversation.public_id]),
    }
