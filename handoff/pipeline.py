"""Message-pipeline steps owned by handoff: silence during a handoff, offer a person on a keyword."""

from __future__ import annotations

from conversations.models import Conversation, Event
from handoff.keywords import matching_keyword
from handoff.transitions.request import handoff_offer
from handoff.transitions.shared import handoff_available


def silence_during_handoff(*, conversation: Conversation, event: Event) -> bool:
    """In handoff (or closed) the AI says nothing: the message is stored and shown to agents only."""
    return conversation.status != Conversation.Status.OPEN


def offer_on_keyword(*, conversation: Conversation, event: Event) -> bool:
    """A trigger keyword makes the bot ask "Would you like to speak with a team member?"."""
    chatbot = conversation.chatbot
    if not chatbot.handoff_keywords:
        return False
    keyword = matching_keyword(text=event.text, keywords=chatbot.handoff_keywords)
    if keyword is None or not handoff_available(chatbot=chatbot):
        return False
    handoff_offer(conversation=conversation, reply_to_seq=event.seq, keyword=keyword)
    return True
