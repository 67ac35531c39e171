"""Example payloads for "Send test": the real event's shape, flagged ``"test": true``."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.utils import timezone

from actions.events import EVENT_VERSION, EventType
from chatbots.models import Chatbot

# Events of a resolved conversation.
_CLOSED_EVENTS = (EventType.HANDOFF_RESOLVED, EventType.CONVERSATION_RATED)


def sample_payload(*, event_type: str, chatbot: Chatbot) -> dict[str, Any]:
    now = timezone.now()
    conversation_id = uuid.UUID(int=0)
    handoff: dict[str, Any] = {
        "status": "pending",
        "trigger": "button",
        "requested_at": (now - timedelta(seconds=5)).isoformat(),
        "deadline_at": (now + timedelta(seconds=chatbot.handoff_timeout_seconds)).isoformat(),
        "claimed_by": None,
        "claimed_at": None,
        "timed_out_at": None,
        "resolved_at": None,
    }
    if event_type == EventType.HANDOFF_CLAIMED:
        handoff.update(status="active", claimed_by={"id": 0, "name": "Test agent"}, claimed_at=now.isoformat())
    elif event_type == EventType.HANDOFF_TIMED_OUT:
        handoff.update(status="busy", timed_out_at=now.isoformat())
    elif event_type in _CLOSED_EVENTS:
        handoff.update(status="resolved", resolved_at=now.isoformat())
        if event_type == EventType.CONVERSATION_RATED:
            handoff.update(claimed_by={"id": 0, "name": "Test agent"}, claimed_at=now.isoformat())
    data: dict[str, Any] = {
        "conversation": {
            "id": str(conversation_id),
            "status": "closed" if event_type in _CLOSED_EVENTS else "handoff",
            "created_at": (now - timedelta(minutes=3)).isoformat(),
            "url": f"{settings.PUBLIC_URL}/dashboard/conversations/{conversation_id}/",
        },
        "chatbot": {"id": chatbot.pk, "name": chatbot.name},
        "workspace": {"id": chatbot.workspace_id},
        "visitor": {
            "id": str(uuid.UUID(int=1)),
            "locale": "en-GB",
            "current_page": "https://www.example.com/pricing",
            "first_seen_at": (now - timedelta(minutes=4)).isoformat(),
            "phone": "+447911123456" if event_type == EventType.LEAD_CAPTURED else None,
        },
        "handoff": handoff,
    }
    if event_type == EventType.HANDOFF_CLAIMED:
        data["late"] = False
    elif event_type == EventType.HANDOFF_TIMED_OUT:
        data["reason"] = "timeout"
    elif event_type == EventType.HANDOFF_TRANSFERRED:
        handoff.update(status="pending")
        data.update(
            take_over=False,
            from_agent={"id": 0, "name": "Test agent"},
            to_agent={"id": 1, "name": "Test colleague"},
            accept_by=(now + timedelta(seconds=settings.TRANSFER_ACCEPT_SECONDS)).isoformat(),
        )
    elif event_type == EventType.HANDOFF_RELEASED:
        data.update(reason="released", previous_agent={"id": 0, "name": "Test agent"})
    elif event_type == EventType.CONVERSATION_RATED:
        data.update(
            rating={
                "score": 5,
                "scale": "thumbs",
                "positive": True,
                "comment": "Quick and friendly, thanks!",
                "rated_at": now.isoformat(),
            },
            agent={"id": 0, "name": "Test agent"},
            handled_by_person=True,
        )
    return {
        "id": str(uuid.uuid4()),
        "type": event_type,
        "version": EVENT_VERSION,
        "created_at": now.isoformat(),
        "test": True,
        "data": data,
    }
