"""Plain JSON snapshots handed to the outbox: actions never read domain models."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from conversations.models import Conversation
from handoff.models import Handoff
from handoff.state import agent_display_name


def _iso(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def event_data(*, conversation: Conversation, handoff: Handoff | None) -> dict[str, Any]:
    visitor = conversation.visitor
    chatbot = conversation.chatbot
    data: dict[str, Any] = {
        "conversation": {
            "id": str(conversation.public_id),
            "status": conversation.status,
            "created_at": _iso(conversation.created_at),
            "url": f"{settings.PUBLIC_URL}/dashboard/conversations/{conversation.public_id}/",
        },
        "chatbot": {"id": chatbot.pk, "name": chatbot.name},
        "workspace": {"id": chatbot.workspace_id},
        "visitor": {
            "id": str(visitor.public_id),
            "locale": visitor.locale,
            "current_page": visitor.current_page or None,
            "first_seen_at": _iso(visitor.first_seen_at),
            "phone": conversation.lead.get("phone"),
        },
        "handoff": None,
    }
    if handoff is not None:
        data["handoff"] = {
            "status": handoff.status,
            "trigger": handoff.trigger,
            "requested_at": _iso(handoff.requested_at),
            "deadline_at": _iso(handoff.deadline_at),
            "claimed_by": None
            if handoff.claimed_by_id is None
            else {"id": handoff.claimed_by_id, "name": agent_display_name(handoff.claimed_by)},
            "claimed_at": _iso(handoff.claimed_at),
            "timed_out_at": _iso(handoff.timed_out_at),
            "resolved_at": _iso(handoff.resolved_at),
        }
    return data
