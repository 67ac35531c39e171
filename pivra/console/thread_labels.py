"""The thread's system lines as the team reads them: how each event is drawn and its short label
(kept in step with static/console/conversation.js, which draws the same events live)."""

from __future__ import annotations

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from conversations.models import Event
from pivra.console.selectors import BUSY_BADGES

# System lines of the thread: a short label before the event's own text (kept in step with conversation.js).
SYSTEM_LABELS = {
    "handoff.requested": _("Handoff requested"),
    "handoff.claimed": _("Claimed"),
    "handoff.timed_out": _("Timed out · team busy"),
    "handoff.resolved": _("Resolved"),
    "lead.captured": _("Mobile number left"),
    "conversation.continued": _("Continued with AI"),
    "handoff.transferred": _("Transferred"),
    "handoff.transfer_ended": _("Transfer not accepted"),
    "handoff.taken_over": _("Taken over"),
    "handoff.released": _("Back in the queue"),
    "rating": _("Visitor rated"),
}
# How a handoff was asked for (Handoff.Trigger), as the team reads it.
TRIGGERS = {"button": _("Button"), "keyword": _("Keyword")}
# Why a live chat went back to the queue (handoff/transitions/requeue.py), as the team reads it.
RELEASE_REASONS = {
    "released": _("released by the agent"),
    "member_removed": _("agent removed from the workspace"),
    "agent_deactivated": _("agent deactivated"),
    "agent_deleted": _("agent deleted"),
    "agent_missing": _("agent no longer a member"),
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
        raw = str((event.data or {}).get("trigger", ""))
        trigger = str(TRIGGERS.get(raw, raw.capitalize()))
        return (
            gettext("Handoff requested · %(trigger)s") % {"trigger": trigger}
            if trigger
            else str(SYSTEM_LABELS[event.kind])
        )
    if event.kind == "handoff.claimed" and (event.data or {}).get("late"):
        return gettext("Claimed late")
    reason = str((event.data or {}).get("reason", ""))
    if event.kind == "handoff.timed_out" and reason in BUSY_BADGES:
        return str(BUSY_BADGES[reason])
    if event.kind == "handoff.released" and reason in RELEASE_REASONS:
        return gettext("Back in the queue · %(reason)s") % {"reason": RELEASE_REASONS[reason]}
    return str(SYSTEM_LABELS.get(event.kind, event.kind.replace(".", " ").replace("_", " ").capitalize()))
