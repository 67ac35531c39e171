"""The catalogue of domain events that actions can subscribe to."""

from __future__ import annotations

from enum import StrEnum

EVENT_VERSION = 1


class EventType(StrEnum):
    CONVERSATION_ESCALATED = "conversation.escalated"
    HANDOFF_CLAIMED = "handoff.claimed"
    HANDOFF_TIMED_OUT = "handoff.timed_out"
    LEAD_CAPTURED = "lead.captured"
    HANDOFF_RESOLVED = "handoff.resolved"
