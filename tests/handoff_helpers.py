"""Shared builders for handoff tests."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime

from actions.models import OutboxEvent
from chatbots.handoff_options import HandoffOptions, chatbot_update_handoff_options
from chatbots.models import Chatbot
from chatbots.services import chatbot_update_handoff_settings
from conversations.models import Conversation, Visitor
from conversations.services import conversation_receive_visitor_message, visitor_create
from handoff.models import Handoff
from handoff.state import visitor_current_conversation
from handoff.transitions.request import handoff_request


def enable_handoff(bot: Chatbot, *, keywords: list[str] | None = None, timeout: int = 180) -> Chatbot:
    return chatbot_update_handoff_settings(
        chatbot=bot,
        enabled=True,
        keywords=keywords if keywords is not None else ["speak to someone", "talk to real person"],
        waiting_message=bot.handoff_waiting_message,
        timeout_seconds=timeout,
        busy_message=bot.handoff_busy_message,
    )


def wait_for_agents(bot: Chatbot) -> Chatbot:
    """The brief's classic flow: a request waits for the response timeout even with no agent console
    open (the product default skips the wait when nobody is online)."""
    options = dataclasses.replace(HandoffOptions.of(bot), skip_wait_when_offline=False)
    return chatbot_update_handoff_options(chatbot=bot, options=options)


def new_visitor(bot: Chatbot, *, locale: str = "en-GB") -> tuple[Visitor, Conversation]:
    visitor = visitor_create(chatbot=bot, locale=locale)
    return visitor, visitor_current_conversation(visitor=visitor)


def say(visitor: Visitor, conversation: Conversation, text: str, client_id: str | None = None):
    return conversation_receive_visitor_message(
        visitor=visitor,
        conversation_public_id=str(conversation.public_id),
        client_id=client_id or uuid.uuid4().hex,
        text=text,
    )


def request(visitor: Visitor, conversation: Conversation, *, now: datetime | None = None) -> Handoff:
    return handoff_request(
        visitor=visitor, conversation_public_id=str(conversation.public_id), trigger="button", now=now
    )


def event_kinds(conversation: Conversation) -> list[str]:
    return list(conversation.events.order_by("seq").values_list("kind", flat=True))


def outbox_events(kind: str) -> list[OutboxEvent]:
    return list(OutboxEvent.objects.filter(type=kind))
