"""The visitor's operations, shared by the WebSocket consumer and the HTTP API (both thin).

Each returns the JSON the client gets back; refusals raise DomainError.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from chatbots.models import Chatbot
from conversations.frames import event_frame
from conversations.models import Conversation, Visitor
from conversations.services import (
    conversation_events_after,
    conversation_for_visitor,
    conversation_receive_visitor_message,
    visitor_create,
    visitor_touch,
)
from handoff.models import Handoff
from handoff.services import (
    conversation_start_new,
    handoff_continue_with_ai,
    handoff_offer_answer,
    handoff_request,
    lead_capture,
)
from handoff.state import conversation_state, visitor_current_conversation
from pivra.errors import NotFound
from pivra.widget.ratelimit import rate_limit_hit, visitor_action_limits
from pivra.widget.tokens import visitor_from_token, visitor_token

# Events a reconnecting client may ask for in one go; an older gap gets an explicit resync.
REPLAY_LIMIT = 500


def _limit(visitor: Visitor, ip: str | None) -> None:
    visitor_action_limits(visitor_key=str(visitor.public_id), ip=ip)


def widget_session(
    *, public_key: str, token: str | None, locale: str = "", page: str = "", user_agent: str = "", ip: str | None = None
) -> dict[str, Any]:
    """Resume the token's visitor, or start a new one when the token is missing, forged, foreign or expired."""
    chatbot = Chatbot.objects.select_related("workspace").filter(public_key=public_key).first()
    if chatbot is None:
        raise NotFound("chatbot_not_found", "This chat is not available.")
    visitor = visitor_from_token(token, chatbot_id=chatbot.pk)
    if visitor is None:
        if ip:
            rate_limit_hit(bucket=f"session:{ip}", limit=settings.RATE_IP_PER_MINUTE)
        visitor = visitor_create(chatbot=chatbot, locale=locale, user_agent=user_agent, page=page)
    else:
        visitor_touch(visitor=visitor, locale=locale, user_agent=user_agent, page=page)
    conversation = visitor_current_conversation(visitor=visitor)
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
    _limit(visitor, ip)
    received = conversation_receive_visitor_message(
        visitor=visitor, conversation_public_id=str(_current(visitor).public_id), client_id=client_id, text=text
    )
    return {"client_id": received.event.client_id, "seq": received.event.seq}


def widget_handoff(*, visitor: Visitor, client_id: str | None, ip: str | None = None) -> dict[str, Any]:
    _limit(visitor, ip)
    conversation = _current(visitor)
    handoff_request(
        visitor=visitor,
        conversation_public_id=str(conversation.public_id),
        trigger=Handoff.Trigger.BUTTON,
        client_id=client_id,
    )
    conversation.refresh_from_db()
    return {"client_id": client_id, "seq": conversation.last_seq, "state": conversation_state(conversation)}


def widget_offer_reply(
    *, visitor: Visitor, client_id: str, offer_seq: int, accept: bool, ip: str | None = None
) -> dict[str, Any]:
    _limit(visitor, ip)
    conversation = _current(visitor)
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
    _limit(visitor, ip)
    conversation = lead_capture(
        visitor=visitor,
        conversation_public_id=str(_lead_conversation(visitor).public_id),
        phone=phone,
        locale=locale,
        client_id=client_id,
    )
    return {"client_id": client_id, "seq": conversation.last_seq, "state": conversation_state(conversation)}


def _lead_conversation(visitor: Visitor) -> Conversation:
    """The conversation whose Team busy form the visitor filled: their newest one with a handoff."""
    with_handoff = Conversation.objects.filter(visitor=visitor, handoff__isnull=False).order_by("-created_at").first()
    return with_handoff or _current(visitor)


def widget_continue(*, visitor: Visitor, client_id: str | None) -> dict[str, Any]:
    fresh = handoff_continue_with_ai(
        visitor=visitor, conversation_public_id=str(_current(visitor).public_id), client_id=client_id
    )
    return {"state": conversation_state(fresh)}


def widget_new_conversation(*, visitor: Visitor) -> dict[str, Any]:
    return {"state": conversation_state(conversation_start_new(visitor=visitor))}


def widget_page(*, visitor: Visitor, url: str) -> None:
    visitor_touch(visitor=visitor, page=url)
