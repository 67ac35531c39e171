"""Message-pipeline steps owned by handoff: silence during a handoff, offer a person on a keyword."""

from __future__ import annotations

from django.utils import timezone

from chatbots.languages import handoff_keywords_for
from chatbots.office_hours import handoff_hidden_at
from conversations.models import Conversation, Event
from handoff.keywords import matching_keyword
from handoff.transitions.request import handoff_offer
from handoff.transitions.shared import handoff_available


def silence_during_handoff(*, conversation: Conversation, event: Event) -> bool:
    """In handoff (or closed) the AI says nothing: the message is stored and shown to agents only.
    (A visitor's message in a live chat restarts its idle clock in the statement that stored it:
    ``conversations.services.event_append(touch_live_handoff=True)``.)"""
    return conversation.status != Conversation.Status.OPEN


def offer_on_keyword(*, conversation: Conversation, event: Event) -> bool:
    """A trigger keyword makes the bot ask "Would you like to speak with a team member?"."""
    chatbot = conversation.chatbot
    # The keywords of the conversation's language plus the default ones.
    keywords = handoff_keywords_for(chatbot=chatbot, language=conversation.language)
    if not keywords:
        return False
    keyword = matching_keyword(text=event.text, keywords=keywords)
    if keyword is None or not handoff_available(chatbot=chatbot):
        return False
    if handoff_hidden_at(chatbot=chatbot, at=timezone.now()):
        return False  # the owner hides the button outside hours: no offer either, the AI answers

    handoff_offer(conversation=conversation, reply_to_seq=event.seq, keyword=keyword)
    return True
