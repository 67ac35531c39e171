"""What the widget shows: the state snapshot of a conversation, and which conversation is current."""

from __future__ import annotations

from typing import Any

from django.utils import timezone

from chatbots.languages import owner_text
from chatbots.office_hours import handoff_hidden_at
from conversations.agent_names import agent_public_name
from conversations.models import Conversation, Visitor
from conversations.services import conversation_start
from handoff.models import Handoff
from handoff.queue_position import queue_snapshot


def agent_display_name(user: Any) -> str | None:
    """The console's name for a teammate (their username when they have no first name). Never for
    visitors: they get ``agent_public_name``."""
    if user is None:
        return None
    return str(user.get_short_name() or user.get_username())


def conversation_state(conversation: Conversation) -> dict[str, Any]:
    """The widget's snapshot of a conversation, its handoff read fresh."""
    handoff = Handoff.objects.select_related("claimed_by", "offered_to").filter(conversation=conversation).first()
    return state_snapshot(conversation=conversation, handoff=handoff)


def state_snapshot(*, conversation: Conversation, handoff: Handoff | None) -> dict[str, Any]:
    """The snapshot from a handoff the caller has just written (a transition's broadcast), or None."""
    chatbot = conversation.chatbot
    return {
        "conversation": str(conversation.public_id),
        "status": conversation.status,
        "last_seq": conversation.last_seq,
        # Read when the widget loads or the state changes: hours that open meanwhile show it next time.
        "handoff_hidden": handoff_hidden_at(chatbot=chatbot, at=timezone.now()),
        "survey": _survey(conversation),
        "handoff": None
        if handoff is None
        else {
            "status": handoff.status,
            "trigger": handoff.trigger,
            "agent": None if handoff.claimed_by is None else agent_public_name(handoff.claimed_by),
            # A transfer waiting for the colleague to accept: the widget says who is coming.
            "transfer_to": _transfer_to(handoff),
            # The owner's words in the conversation's language (its variant, else the default text).
            "waiting_message": owner_text(chatbot=chatbot, name="waiting", language=conversation.language),
            "busy_message": owner_text(chatbot=chatbot, name="busy", language=conversation.language),
            "busy_reason": handoff.busy_reason,
            "offline_message": owner_text(chatbot=chatbot, name="offline", language=conversation.language),
            "lead_phone": conversation.lead.get("phone"),
            # Where a waiting visitor stands and the usual wait (None outside the line / too little history).
            **queue_snapshot(handoff=handoff),
        },
    }


def _survey(conversation: Conversation) -> dict[str, Any] | None:
    """ "How did we do?" on the resolved screen: the chatbot's scale and the visitor's score so far."""
    scale = conversation.chatbot.satisfaction_survey
    if conversation.status != Conversation.Status.CLOSED or scale == "off":
        return None
    return {"scale": scale, "score": conversation.rating}


def _transfer_to(handoff: Handoff) -> str | None:
    if handoff.offer_kind != "transfer" or handoff.offered_to_id is None or handoff.status != Handoff.Status.PENDING:
        return None
    return agent_public_name(handoff.offered_to)


def visitor_current_conversation(*, visitor: Visitor, language: str | None = None) -> Conversation:
    """The conversation the widget shows: one an agent is live in (even an older one the visitor left
    for the AI — they must never miss the agent), else the newest, else a fresh one (in ``language``,
    the widget's negotiated language, when given)."""
    live = (
        Conversation.objects.select_related("chatbot")
        .filter(visitor=visitor, handoff__status=Handoff.Status.ACTIVE)
        .order_by("-handoff__claimed_at")
        .first()
    )
    if live is not None:
        return live
    latest = Conversation.objects.select_related("chatbot").filter(visitor=visitor).order_by("-created_at").first()
    return latest or conversation_start(visitor=visitor, language=language)
