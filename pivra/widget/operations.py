"""The visitor's operations, shared by the WebSocket consumer and the HTTP API (both thin).

Each returns the JSON the client gets back; refusals raise DomainError.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from django.conf import settings
from django.core.cache import cache
from django.db import IntegrityError
from django.utils import translation
from django.utils.translation import gettext as _

from chatbots.models import Chatbot
from conversations.frames import event_frame
from conversations.models import Conversation, Event, Visitor
from conversations.services import (
    conversation_events_after,
    conversation_for_visitor,
    conversation_receive_visitor_message,
    visitor_create,
    visitor_latest_language,
    visitor_touch,
)
from handoff.models import Handoff
from handoff.state import conversation_state, state_snapshot, visitor_current_conversation
from handoff.transitions.continue_ai import conversation_start_new, handoff_continue_with_ai
from handoff.transitions.lead import lead_capture
from handoff.transitions.request import handoff_offer_answer, handoff_request
from pivra.errors import Conflict, NotFound
from pivra.inputs import MAX_SEQ, clean_client_id, parse_int
from pivra.widget.ratelimit import RateLimited, page_report_limits, rate_limit_hit, visitor_action_limits
from pivra.widget.tokens import visitor_from_token, visitor_token

# Events a reconnecting client may ask for in one go; an older gap gets an explicit resync.
REPLAY_LIMIT = 500
# The database's guard against two events with one client id in a conversation (conversations.models).
CLIENT_ID_CONSTRAINT = "event_unique_client_id"
CLIENT_ID_REUSED = "client_id_reused"
OFFER_ANSWER_KINDS = ("handoff.offer_accepted", "handoff.offer_declined")


def _required_client_id(client_id: str | None) -> str:
    return clean_client_id(client_id, required=True) or ""


def _reused() -> Conflict:
    return Conflict(CLIENT_ID_REUSED, "This client_id was already used for a different action.")


def _limit(
    visitor: Visitor,
    ip: str | None,
    *,
    conversation: Conversation | None = None,
    client_id: str | None = None,
    kinds: tuple[str, ...] = (),
) -> bool:
    """Count one action against the visitor's and the IP's budgets — unless it resends one already
    stored in ``conversation`` under the same client id (an event of one of ``kinds``): a resend
    changes nothing, so it is free. An id already used for another kind of action is counted, then
    refused with 409 ``client_id_reused``: reuse must not be a free way to make the server work.
    Returns whether the action was counted. (The service still decides; a reused id with other
    content of the same kind is refused there, see ``_refusing_reuse``.)"""
    used = (
        Event.objects.filter(conversation=conversation, client_id=client_id).values_list("kind", flat=True).first()
        if client_id and conversation is not None
        else None
    )
    if used is not None and used in kinds:
        return False
    visitor_action_limits(visitor_key=str(visitor.public_id), ip=ip)
    if used is not None:
        raise _reused()
    return True


@contextmanager
def _refusing_reuse(visitor: Visitor, ip: str | None, *, counted: bool) -> Iterator[None]:
    """A client id reused with other content, or by a twin request of another kind that committed
    first (the database's unique constraint is the last word): 409 ``client_id_reused``, counted."""
    try:
        yield
    except IntegrityError as exc:
        if getattr(getattr(exc.__cause__, "diag", None), "constraint_name", None) != CLIENT_ID_CONSTRAINT:
            raise
        if not counted:
            visitor_action_limits(visitor_key=str(visitor.public_id), ip=ip)
        raise _reused() from None
    except Conflict as exc:
        if exc.code == CLIENT_ID_REUSED and not counted:
            visitor_action_limits(visitor_key=str(visitor.public_id), ip=ip)
        raise


def widget_visitor(*, visitor_id: int) -> Visitor | None:
    """The visitor a socket said hello as, loaded fresh for each of its frames (or None if deleted)."""
    return Visitor.objects.select_related("chatbot__workspace").filter(pk=visitor_id).first()


def visitor_language(*, visitor: Visitor) -> str:
    """The language the widget's server-side words (refusal details) take for this visitor: their newest
    conversation's, else the chatbot's default language; a language the owner fixed always (issue 17)."""
    chatbot = visitor.chatbot
    if chatbot.language:  # the owner fixed it: the frame and every conversation speak it
        return chatbot.language
    return visitor_latest_language(visitor=visitor) or chatbot.default_language or settings.LANGUAGE_CODE


def widget_session(
    *,
    public_key: str,
    token: str | None,
    locale: str = "",
    page: str = "",
    user_agent: str = "",
    ip: str | None = None,
    language: str = "",
) -> dict[str, Any]:
    """Resume the token's visitor, or start a new one when the token is missing, forged, foreign or expired.
    A conversation started here is held in ``language`` (the widget's negotiated one)."""
    chatbot = Chatbot.objects.select_related("workspace").filter(public_key=public_key).first()
    if chatbot is None:
        raise NotFound("chatbot_not_found", _("This chat is not available."))
    visitor = visitor_from_token(token, chatbot_id=chatbot.pk)
    if visitor is None:
        if ip:
            rate_limit_hit(bucket=f"session:{ip}", limit=settings.RATE_IP_PER_MINUTE)
        visitor = visitor_create(chatbot=chatbot, locale=locale, user_agent=user_agent, page=page)
    else:
        visitor_touch(visitor=visitor, locale=locale, user_agent=user_agent, page=page)
    conversation = visitor_current_conversation(visitor=visitor, language=language or None)
    return {
        "token": visitor_token(visitor),
        "visitor": str(visitor.public_id),
        "state": conversation_state(conversation),
    }


def widget_state(*, visitor: Visitor) -> dict[str, Any]:
    return conversation_state(visitor_current_conversation(visitor=visitor))


def widget_events(*, visitor: Visitor, conversation: str | None, after_seq: int) -> dict[str, Any]:
    target = (
        conversation_for_visitor(visitor=visitor, public_id=conversation)
        if conversation
        else visitor_current_conversation(visitor=visitor)
    )
    events = conversation_events_after(conversation=target, after_seq=after_seq)
    return {"state": conversation_state(target), "events": [event_frame(e, target) for e in events]}


def widget_replay(
    *, visitor: Visitor, conversation: str | None, last_seq: int
) -> tuple[dict[str, Any], list[dict[str, Any]], bool]:
    """(state, missed events, resync needed) for a reconnecting client."""
    current = visitor_current_conversation(visitor=visitor)
    state = conversation_state(current)
    if conversation != str(current.public_id):
        return state, [], False  # the client switches conversation and loads its history itself
    if current.last_seq - last_seq > REPLAY_LIMIT:
        return state, [], True
    events = conversation_events_after(conversation=current, after_seq=last_seq)
    return state, [event_frame(e, current) for e in events], False


def _current(visitor: Visitor) -> Conversation:
    return visitor_current_conversation(visitor=visitor)


def widget_message(*, visitor: Visitor, client_id: str, text: str, ip: str | None = None) -> dict[str, Any]:
    client_id = _required_client_id(client_id)
    conversation = _current(visitor)
    counted = _limit(visitor, ip, conversation=conversation, client_id=client_id, kinds=("message",))
    with _refusing_reuse(visitor, ip, counted=counted):
        received = conversation_receive_visitor_message(
            visitor=visitor, conversation_public_id=str(conversation.public_id), client_id=client_id, text=text
        )
    return {"client_id": received.event.client_id, "seq": received.event.seq}


def widget_handoff(*, visitor: Visitor, client_id: str | None, ip: str | None = None) -> dict[str, Any]:
    client_id = clean_client_id(client_id, required=False)
    conversation = _current(visitor)
    counted = _limit(visitor, ip, conversation=conversation, client_id=client_id, kinds=("handoff.requested",))
    with _refusing_reuse(visitor, ip, counted=counted):
        handoff = handoff_request(
            visitor=visitor,
            conversation_public_id=str(conversation.public_id),
            trigger=Handoff.Trigger.BUTTON,
            client_id=client_id,
        )
    conversation.refresh_from_db(fields=["status", "last_seq", "lead"])
    state = state_snapshot(conversation=conversation, handoff=handoff)  # the handoff as just written
    return {"client_id": client_id, "seq": conversation.last_seq, "state": state}


def widget_offer_reply(
    *, visitor: Visitor, client_id: str, offer_seq: int, accept: bool, ip: str | None = None
) -> dict[str, Any]:
    client_id = _required_client_id(client_id)
    if parse_int(offer_seq, min_value=1, max_value=MAX_SEQ) is None:
        raise NotFound("offer_not_found", _("There is no such question to answer in this conversation."))
    conversation = _current(visitor)
    counted = _limit(visitor, ip, conversation=conversation, client_id=client_id, kinds=OFFER_ANSWER_KINDS)
    with _refusing_reuse(visitor, ip, counted=counted):
        answer = handoff_offer_answer(
            visitor=visitor,
            conversation_public_id=str(conversation.public_id),
            offer_seq=offer_seq,
            accept=accept,
            client_id=client_id,
        )
    conversation.refresh_from_db()
    return {"client_id": client_id, "seq": answer.event.seq, "state": conversation_state(conversation)}


def widget_lead(
    *, visitor: Visitor, client_id: str | None, phone: str, locale: str, ip: str | None = None
) -> dict[str, Any]:
    client_id = clean_client_id(client_id, required=False)
    target = _lead_conversation(visitor)
    counted = _limit(visitor, ip, conversation=target, client_id=client_id, kinds=("lead.captured",))
    # The phone errors are shown as worded: in the language of the conversation whose form was filled.
    with (
        _refusing_reuse(visitor, ip, counted=counted),
        translation.override(target.language or translation.get_language()),
    ):
        conversation = lead_capture(
            visitor=visitor,
            conversation_public_id=str(target.public_id),
            phone=phone,
            locale=locale,
            client_id=client_id,
        )
    return {"client_id": client_id, "seq": conversation.last_seq, "state": conversation_state(conversation)}


def _lead_conversation(visitor: Visitor) -> Conversation:
    """The conversation whose Team busy form the visitor filled: their newest one with a handoff."""
    with_handoff = Conversation.objects.filter(visitor=visitor, handoff__isnull=False).order_by("-created_at").first()
    return with_handoff or _current(visitor)


def widget_continue(*, visitor: Visitor, client_id: str | None, ip: str | None = None) -> dict[str, Any]:
    """ "Continue with AI". A resend (same client id) is free of budget and never starts another
    conversation. The reply is the visitor's current conversation, read after the service committed:
    a late claim of the busy handoff may commit right after the switch to the fresh AI chat, and a
    reply naming the fresh conversation would then drag the widget away from the live agent."""
    client_id = clean_client_id(client_id, required=False)
    if _continued(visitor, client_id) is None:
        current = _current(visitor)
        counted = _limit(visitor, ip, conversation=current, client_id=client_id, kinds=("conversation.continued",))
        try:
            with _refusing_reuse(visitor, ip, counted=counted):
                handoff_continue_with_ai(
                    visitor=visitor, conversation_public_id=str(current.public_id), client_id=client_id
                )
        except Conflict as exc:
            if exc.code == CLIENT_ID_REUSED:
                raise
            # A twin of this request committed after the check above: the current conversation is
            # then already the fresh one, which has no busy handoff to continue from.
            if _continued(visitor, client_id) is None:
                raise
    return {"state": conversation_state(_current(visitor))}


def _continued(visitor: Visitor, client_id: str | None) -> Conversation | None:
    """The fresh conversation an earlier "Continue with AI" with this client id started: the first one
    created after its ``conversation.continued`` event (both are written in one transaction)."""
    if not client_id:
        return None
    event = Event.objects.filter(
        conversation__visitor=visitor, kind="conversation.continued", client_id=client_id
    ).first()
    if event is None:
        return None
    return (
        Conversation.objects.select_related("chatbot")
        .filter(visitor=visitor, created_at__gte=event.created_at)
        .exclude(pk=event.conversation_id)
        .order_by("created_at")
        .first()
    )


# "Start new conversation" writes no event that could carry its client id, so the conversation it
# started is remembered in the cache (Redis) under that id. The widget resends an unacknowledged
# action after a reconnect, within seconds, so a day of memory covers every resend.
NEW_CONVERSATION_MEMORY_SECONDS = 86_400
# While the first request is starting the conversation (one INSERT: milliseconds), a twin waits for
# it this long at most. Kept short: socket consumers run their database calls on one shared thread.
TWIN_WAIT_SECONDS = 1.0
_STARTING = "starting"


def widget_new_conversation(*, visitor: Visitor, client_id: str | None = None, ip: str | None = None) -> dict[str, Any]:
    """ "Start new conversation". Idempotent per client id: a resend gets the conversation the first
    request started, free of budget, and never a second one."""
    client_id = clean_client_id(client_id, required=False)
    if not client_id:
        _limit(visitor, ip)
        return {"state": conversation_state(conversation_start_new(visitor=visitor))}
    key = f"widget:new:{visitor.public_id}:{client_id}"
    started = _started_under(key, visitor=visitor)
    if started is None:
        _limit(visitor, ip)
        # add() is atomic: of two twins, exactly one starts the conversation; the other waits for it.
        if cache.add(key, _STARTING, timeout=10):
            try:
                started = conversation_start_new(visitor=visitor)
            except BaseException:
                cache.delete(key)
                raise
            cache.set(key, str(started.public_id), timeout=NEW_CONVERSATION_MEMORY_SECONDS)
        else:
            started = _started_under(key, visitor=visitor, wait=TWIN_WAIT_SECONDS)
            if started is None:
                raise Conflict("in_progress", _("A new conversation is being started. Try again in a moment."))
    return {"state": conversation_state(started)}


def _started_under(key: str, *, visitor: Visitor, wait: float = 0.0) -> Conversation | None:
    """The conversation remembered under ``key``, waiting up to ``wait`` seconds for a twin to finish."""
    deadline = time.monotonic() + wait
    while True:
        value = cache.get(key)
        if value is not None and value != _STARTING:
            found = Conversation.objects.select_related("chatbot").filter(visitor=visitor, public_id=value).first()
            if found is None:
                cache.delete(key)  # the conversation is gone: start afresh
            return found
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.05)


def widget_page(*, visitor: Visitor, url: str, ip: str | None = None) -> None:
    """Remember the page the visitor is on. Over its budget a report is dropped, not refused: it has
    no reply, and an error frame would interrupt the chat (drafts, typing) for a background update."""
    try:
        page_report_limits(visitor_key=str(visitor.public_id), ip=ip)
    except RateLimited:
        return
    visitor_touch(visitor=visitor, page=url)
