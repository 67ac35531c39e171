"""Wire format of conversation events, shared by the widget socket, SSE, the HTTP API and the console."""

from __future__ import annotations

from typing import Any

from conversations.models import Conversation, Event
from conversations.pipeline import ROUTED_TO_AI


def event_frame(event: Event, conversation: Conversation) -> dict[str, Any]:
    return {
        "type": "event",
        "conversation": str(conversation.public_id),
        "seq": event.seq,
        "kind": event.kind,
        "author": event.author,
        "text": event.text,
        "agent": event.agent_name or None,
        "client_id": event.client_id,
        # Minus the pipeline's routing mark: internal, and absent from the live frame the visitor got.
        "data": {key: value for key, value in event.data.items() if key != ROUTED_TO_AI},
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
    }
