"""The thread's system lines as the team reads them: how each event is drawn and its short label
(kept in step with static/console/conversation.js, which draws the same events live)."""

from __future__ import annotations

from conversations.models import Event
from pivra.console.selectors import BUSY_BADGES

# System lines of the thread: a short label before the event's own text (kept in step with conversation.js).
SYSTEM_LABELS = {
    "handoff.requested": "Handoff requested",
    "handoff.claimed": "Claimed",
    "handoff.timed_out": "Timed out · team busy",
    "handoff.resolved": "Resolved",
    "lead.captured": "Mobile number left",
    "conversation.continued": "Continued with AI",
    "handoff.transferred": "Transferred",
    "handoff.transfer_ended": "Transfer not accepted",
    "handoff.taken_over": "Taken over",
    "handoff.released": "Back in the queue",
    "rating": "Visitor rated",
}
# Why a live chat went back to the queue (handoff/transitions/requeue.py), as the team reads it.
RELEASE_REASONS = {
    "released": "released by the agent",
    "member_removed": "agent removed from the workspace",
    "agent_deactivated": "agent deactivated",
    "agent_deleted": "agent deleted",
    "agent_missing": "agent no longer a member",
}


def event_style(event: Event) -> str:
    """How the thread draws an event: a visitor, AI or agent bubble, or a system line."""
    if event.kind == "message" and event.author in (Event.Author.VISITOR, Event.Author.AI, Event.Author.AGENT):
        return str(event.author)
    if event.kind == "handoff.offer":
        return "ai"  # the bot's question, as the visitor saw it
    if event.kind.startswith("handoff.offer_"):
        return "visitor"  # the visitor's answer to it
    return "system"


def system_label(event: Event) -> str:
    if event.kind == "handoff.requested":
        trigger = str((event.data or {}).get("trigger", "")).capitalize()
        return f"Handoff requested · {trigger}" if trigger else "Handoff requested"
    if event.kind == "handoff.claimed" and (event.data or {}).get("late"):
        return "Claimed late"
    reason = str((event.data or {}).get("reason", ""))
    if event.kind == "handoff.timed_out" and reason in BUSY_BADGES:
        return BUSY_BADGES[reason]
    if event.kind == "handoff.released" and reason in RELEASE_REASONS:
        return f"Back in the queue · {RELEASE_REASONS[reason]}"
    return SYSTEM_LABELS.get(event.kind, event.kind.replace(".", " ").replace("_", " ").capitalize())
