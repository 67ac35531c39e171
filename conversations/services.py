"""Every state change of visitors and conversations. Events are numbered under the conversation's row lock."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from django.utils.module_loading import import_string
from psycopg.types.json import Jsonb

from chatbots.languages import supported_language
from chatbots.models import Chatbot
from conversations.agent_names import agent_public_name
from conversations.frames import event_frame
from conversations.models import Conversation, Event, Visitor
from pivra.errors import Conflict, DomainError, NotFound
from pivra.ids import parse_uuid
from pivra.inputs import clean_client_id, strip_unstorable
from pivra.queries import unique_row
from pivra.realtime import console_group, conversation_group, send_event_on_commit, visitor_group

logger = logging.getLogger(__name__)


def visitor_create(*, chatbot: Chatbot, locale: str = "", user_agent: str = "", page: str = "") -> Visitor:
    return Visitor.objects.create(
        chatbot=chatbot,
        locale=strip_unstorable(locale)[:35],
        user_agent=strip_unstorable(user_agent)[:400],
        current_page=_clean_page(page),
    )


def visitor_touch(
    *, visitor: Visitor, locale: str | None = None, user_agent: str | None = None, page: str | None = None
) -> Visitor:
    """Remember when and where the visitor was last seen (shown to agents)."""
    fields = ["last_seen_at"]
    visitor.last_seen_at = timezone.now()
    if locale:
        visitor.locale, fields = strip_unstorable(locale)[:35], [*fields, "locale"]
    if user_agent:
        visitor.user_agent, fields = strip_unstorable(user_agent)[:400], [*fields, "user_agent"]
    if page is not None and _clean_page(page):
        visitor.current_page, fields = _clean_page(page), [*fields, "current_page"]
    Visitor.objects.filter(pk=visitor.pk).update(**{f: getattr(visitor, f) for f in fields})
    return visitor


def _clean_page(page: str | None) -> str:
    page = strip_unstorable(page or "").strip()
    return page[:1000] if page.startswith(("http://", "https://")) else ""


def visitor_latest_language(*, visitor: Visitor) -> str:
    """The language of the visitor's newest conversation that has one, or ""."""
    return (
        Conversation.objects.filter(visitor=visitor)
        .exclude(language="")
        .order_by("-created_at")
        .values_list("language", flat=True)
        .first()
    ) or ""


def conversation_start(*, visitor: Visitor, language: str | None = None) -> Conversation:
    """A fresh AI conversation for the visitor, held in ``language`` (the widget's negotiated one, issue
    17): its waiting / busy / offline texts and trigger keywords follow it. Without a language Pivra
    speaks, the visitor's previous conversation's ("Start new conversation" and "Continue with AI" keep
    it), else the chatbot's default language. A language the owner fixed always wins (the frame shows it)."""
    chatbot = visitor.chatbot
    code = supported_language(chatbot.language) if chatbot.language else None
    if code is None and language:
        code = supported_language(language)
    if code is None:
        code = visitor_latest_language(visitor=visitor)
    if not code:
        code = supported_language(chatbot.default_language) or ""
    return Conversation.objects.create(chatbot_id=visitor.chatbot_id, visitor=visitor, language=code)


def conversation_lock(*, conversation_id: int) -> Conversation:
    """The conversation row, locked until the transaction ends: the only way to append events."""
    # of=self: lock the conversation only, not the joined chatbot and visitor rows.
    return (
        Conversation.objects.select_for_update(of=("self",))
        .select_related("chatbot", "visitor")
        .get(pk=conversation_id)
    )


def conversation_lock_for_visitor(*, visitor: Visitor, public_id: str | None) -> Conversation:
    """The visitor's own conversation with this public id, locked as ``conversation_lock`` locks it,
    in one query (with its chatbot and workspace, which visitor operations check); anyone else's is
    simply not found."""
    key = parse_uuid(public_id)
    conversation = (
        unique_row(
            Conversation.objects.select_for_update(of=("self",))
            .select_related("chatbot__workspace", "visitor")
            .filter(visitor=visitor, public_id=key)
        )
        if key
        else None
    )
    if conversation is None:
        raise NotFound("conversation_not_found", "This conversation does not exist for this visitor.")
    return conversation


def conversation_for_visitor(*, visitor: Visitor, public_id: str | None) -> Conversation:
    """The visitor's own conversation with this public id; anyone else's is simply not found."""
    key = parse_uuid(public_id)
    conversation = Conversation.objects.filter(visitor=visitor, public_id=key).first() if key else None
    if conversation is None:
        raise NotFound("conversation_not_found", "This conversation does not exist for this visitor.")
    return conversation


def event_append(
    *,
    conversation: Conversation,
    kind: str,
    author: str,
    text: str = "",
    agent: User | None = None,
    client_id: str | None = None,
    data: dict[str, Any] | None = None,
    notify_console: bool = False,
    touch_live_handoff: bool = False,
) -> Event:
    """Append the next event to a conversation locked by ``conversation_lock``; broadcast after commit.
    ``touch_live_handoff``: a visitor wrote during a handoff — the same statement restarts a live
    handoff's idle clock (``_TOUCH_HANDOFF``)."""
    connection = transaction.get_connection()
    if not connection.in_atomic_block:
        raise RuntimeError("event_append needs the conversation locked in a transaction")
    event = Event(
        conversation=conversation,
        kind=kind,
        author=author,
        text=text,
        agent=agent,
        agent_name=agent_public_name(agent) if agent else "",  # stored as the visitor sees it
        client_id=client_id,
        data=data or {},
        created_at=timezone.now(),
    )
    if connection.vendor == "postgresql":
        _append_in_one_statement(connection, conversation, event, touch_live_handoff=touch_live_handoff)
    else:
        if touch_live_handoff:  # SQLite: one writer at a time, no data-modifying WITH
            with connection.cursor() as cursor:
                cursor.execute(_TOUCH_HANDOFF.format(skip_locked=""), _touch_params(conversation, event))
        conversation.last_seq += 1
        Conversation.objects.filter(pk=conversation.pk).update(
            last_seq=conversation.last_seq, updated_at=event.created_at
        )
        event.seq = conversation.last_seq
        event.save(force_insert=True)
    # The widget gets the visitor's frame; agents (watching it, or the whole console) get the team's,
    # in one publish when they are the same (most events: nothing in their data is internal).
    visitor, team = [visitor_group(conversation.visitor.public_id)], [conversation_group(conversation.public_id)]
    if notify_console:
        team.append(console_group(conversation.chatbot.workspace_id))
    visitor_frame, team_frame = event_frame(event, conversation), event_frame(event, conversation, team=True)
    split = team_frame != visitor_frame
    batches = [(visitor, visitor_frame), (team, team_frame)] if split else [(visitor + team, team_frame)]
    send_event_on_commit(batches, conversation_id=conversation.pk, seq=event.seq)
    return event


# The next seq and the event's row in one round trip (the hot path of every message): the
# conversation's counter moves and the event is inserted with it, under the row lock the caller holds.
_APPEND_SQL = """
WITH bumped AS (
    UPDATE conversations_conversation SET last_seq = last_seq + 1, updated_at = %(now)s
    WHERE id = %(conversation)s RETURNING last_seq
)
INSERT INTO conversations_event
    (conversation_id, seq, kind, author, text, agent_id, agent_name, client_id, data, created_at)
SELECT %(conversation)s, last_seq, %(kind)s, %(author)s, %(text)s, %(agent)s, %(agent_name)s, %(client_id)s,
       %(data)s, %(now)s
FROM bumped RETURNING id, seq
"""


# A visitor's message in a live handoff restarts its idle clock (``handoff_handoff.last_message_at``,
# see handoff/transitions/idle.py) in the append's own statement: no round trip of its own, and
# nothing to do while the handoff is pending or Team busy (it matches no row). Written at most once a
# minute (the idle limit is in minutes): most messages write nothing, so the indexed column costs no
# index update on every message. SKIP LOCKED: the handoff row is locked before the conversation's
# everywhere else; a transition holding it is changing the handoff anyway (resolve, requeue).
_TOUCH_HANDOFF = """
UPDATE handoff_handoff SET last_message_at = %(now)s
WHERE id = (SELECT t.id FROM handoff_handoff t WHERE t.conversation_id = %(conversation)s AND t.status = 'active'
            AND (t.last_message_at IS NULL OR t.last_message_at <= %(stale)s){skip_locked})
"""
# The handoff's idle clock moves in steps of this much at most (as handoff.queries.IDLE_CLOCK_STEP;
# conversations never imports handoff).
_IDLE_CLOCK_STEP = timedelta(seconds=60)


def _touch_params(conversation: Conversation, event: Event) -> dict[str, Any]:
    return {"now": event.created_at, "stale": event.created_at - _IDLE_CLOCK_STEP, "conversation": conversation.pk}


_TOUCH_AND_APPEND_SQL = (
    f"WITH touched AS ({_TOUCH_HANDOFF.format(skip_locked=' FOR UPDATE SKIP LOCKED')}),"
    + _APPEND_SQL.replace("WITH bumped AS", " bumped AS", 1)
)


def _append_in_one_statement(
    connection: Any, conversation: Conversation, event: Event, *, touch_live_handoff: bool = False
) -> None:
    with connection.cursor() as cursor:
        cursor.execute(
            _TOUCH_AND_APPEND_SQL if touch_live_handoff else _APPEND_SQL,
            {
                "now": event.created_at,
                "conversation": conversation.pk,
                "kind": event.kind,
                "author": event.author,
                "text": event.text,
                "agent": event.agent_id,
                "agent_name": event.agent_name,
                "client_id": event.client_id,
                "data": Jsonb(event.data),
                "stale": event.created_at - _IDLE_CLOCK_STEP,
            },
        )
        row = cursor.fetchone()
    if row is None:  # the conversation row is gone: the caller's lock makes this impossible
        raise Conversation.DoesNotExist(f"conversation {conversation.pk}")
    event.pk, event.seq = row
    event._state.adding = False  # a stored row from now on, as ``create`` leaves it
    event._state.db = connection.alias
    conversation.last_seq = event.seq


def _check_client_id(client_id: str) -> str:
    return clean_client_id(client_id, required=True) or ""


def event_by_client_id(*, conversation: Conversation, client_id: str) -> Event | None:
    return unique_row(Event.objects.filter(conversation=conversation, client_id=client_id))


def clean_message_text(text: str) -> str:
    text = strip_unstorable(text or "").strip()
    if not text:
        raise DomainError("empty_message", "Type a message first.")
    limit = settings.MESSAGE_MAX_LENGTH
    if len(text) > limit:
        raise DomainError("message_too_long", f"Messages can be at most {limit} characters long.", status=413)
    return text


@dataclass(frozen=True)
class Received:
    event: Event
    duplicate: bool


PipelineStep = Callable[..., bool]


def _pipeline() -> list[PipelineStep]:
    return [import_string(path) for path in settings.MESSAGE_PIPELINE]


def conversation_receive_visitor_message(
    *, visitor: Visitor, conversation_public_id: str, client_id: str, text: str
) -> Received:
    """Store a visitor message once per client id, then run the message pipeline in the same transaction.

    A resend with the same client id returns the stored event; the same id with other text is refused.
    """
    client_id = _check_client_id(client_id)
    text = clean_message_text(text)
    with transaction.atomic():
        conversation = conversation_lock_for_visitor(visitor=visitor, public_id=conversation_public_id)
        existing = event_by_client_id(conversation=conversation, client_id=client_id)
        if existing is not None:
            if existing.text != text or existing.kind != "message":
                raise Conflict("client_id_reused", "This client_id was already used for a different message.")
            return Received(event=existing, duplicate=True)
        if conversation.status == Conversation.Status.CLOSED:
            raise Conflict(
                "conversation_closed", "This conversation is resolved. Start a new conversation to keep chatting."
            )
        event = event_append(
            conversation=conversation,
            kind="message",
            author=Event.Author.VISITOR,
            text=text,
            client_id=client_id,
            notify_console=conversation.status == Conversation.Status.HANDOFF,
            touch_live_handoff=conversation.status == Conversation.Status.HANDOFF,
        )
        for step in _pipeline():
            if step(conversation=conversation, event=event):
                break
    return Received(event=event, duplicate=False)


def conversation_events_after(*, conversation: Conversation, after_seq: int, limit: int | None = None) -> list[Event]:
    events = Event.objects.filter(conversation=conversation, seq__gt=max(after_seq, 0)).order_by("seq")
    return list(events[:limit] if limit else events)
