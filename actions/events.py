"""The catalogue of domain events that actions can subscribe to."""

from __future__ import annotations

from enum import StrEnum

from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

EVENT_VERSION = 1


class EventType(StrEnum):
    CONVERSATION_ESCALATED = "conversation.escalated"
    HANDOFF_CLAIMED = "handoff.claimed"
    HANDOFF_TIMED_OUT = "handoff.timed_out"
    LEAD_CAPTURED = "lead.captured"
    HANDOFF_RESOLVED = "handoff.resolved"
    HANDOFF_TRANSFERRED = "handoff.transferred"
    HANDOFF_RELEASED = "handoff.released"
    CONVERSATION_RATED = "conversation.rated"


# Events a visitor can trigger at will: their notifications are capped per chatbot, and the excess
# is summed up in one digest per window (actions/caps.py).
# A rating too: once per conversation, but a visitor's newer request resolves their older one
# ("superseded"), so one visitor can make a stream of rateable conversations.
CAPPED_EVENTS = frozenset(
    {EventType.CONVERSATION_ESCALATED.value, EventType.LEAD_CAPTURED.value, EventType.CONVERSATION_RATED.value}
)
# The payload type of such a digest. Not an EventType: nobody subscribes to it, every action
# subscribed to the capped event gets it.
DIGEST_TYPE = "notification.digest"

# How the console describes each event: (short label, what it means).
EVENT_INFO: dict[str, tuple[str | Promise, str | Promise]] = {
    EventType.CONVERSATION_ESCALATED: (
        _("Handoff requested"),
        _("A visitor asks for a person (button or trigger keyword)."),
    ),
    EventType.HANDOFF_CLAIMED: (_("Handoff claimed"), _("An agent claims the conversation.")),
    EventType.HANDOFF_TIMED_OUT: (
        _("Handoff timed out"),
        _("No one claimed it in time, or nobody was online / it was outside office hours; the visitor sees Team busy."),
    ),
    EventType.LEAD_CAPTURED: (_("Lead captured"), _("The visitor leaves a mobile number.")),
    EventType.HANDOFF_RESOLVED: (_("Conversation resolved"), _("An agent resolves the conversation.")),
    EventType.HANDOFF_TRANSFERRED: (
        _("Handoff transferred"),
        _("An agent transfers a live chat to a colleague, or an owner or admin takes it over."),
    ),
    EventType.HANDOFF_RELEASED: (
        _("Handoff released"),
        _("A live conversation goes back to the queue (released, transfer not accepted, or the agent left)."),
    ),
    EventType.CONVERSATION_RATED: (
        _("Conversation rated"),
        _('The visitor answers "How did we do?" after a resolve (thumbs or 1-5 stars, optional comment).'),
    ),
}
