"""AI responders behind one interface: pick one per chatbot with ``responder_for``."""

from __future__ import annotations

from chatbots.models import Chatbot
from chatbots.responders.base import FRIENDLY_ERROR, ChatTurn, Responder, ResponderError, RetrievedEntry, in_language
from chatbots.responders.knowledge import KnowledgeBaseResponder, fallback_text, knowledge_search
from chatbots.responders.openai_compat import OpenAICompatibleResponder

__all__ = [
    "FRIENDLY_ERROR",
    "ChatTurn",
    "KnowledgeBaseResponder",
    "OpenAICompatibleResponder",
    "Responder",
    "ResponderError",
    "RetrievedEntry",
    "fallback_text",
    "in_language",
    "knowledge_search",
    "responder_for",
]


def responder_for(chatbot: Chatbot) -> Responder:
    """The responder for the chatbot's configured provider; anything but OPENAI answers from the knowledge base."""
    if chatbot.ai_provider == Chatbot.Provider.OPENAI:
        return OpenAICompatibleResponder(chatbot)
    return KnowledgeBaseResponder(chatbot)
