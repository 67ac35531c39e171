"""Wire format of conversation events, shared by the widget socket, SSE, the HTTP API and the console.

An event's ``data`` is written for the team: why a chat went back to the queue (``member_removed``,
``agent_deactivated``…), who did it (a user id), whether a colleague declined a transfer. A visitor
reads only the keys their widget needs, listed per kind below; a kind not listed shows them no data.
So a new key stays internal until someone decides the visitor may read it.
"""

from __future__ import annotations

from typing import Any

from conversations.models import Conversation, Event
from conversations.pipeline import ROUTED_TO_AI
from pivra.attachment_links import with_links

VISITOR_DATA_KEYS: dict[str, frozenset[str]] = {
    "message": frozenset({"reply_to", "error", "attachment"}),  # attachment: its id and description
    "handoff.offer": frozenset({"reply_to", "keyword", "options"}),
    "handoff.offer_accepted": frozenset({"offer_seq"}),
    "handoff.offer_declined": frozenset({"offer_seq"}),
    "handoff.requested": frozenset({"trigger"}),
    "handoff.claimed": frozenset({"late"}),
    "handoff.timed_out": frozenset({"reason"}),  # timeout / offline / after_hours: the widget's line
    "handoff.resolved": frozenset({"reason"}),  # idle / superseded
    "lead.captured": frozenset({"phone"}),  # the visitor's own number
    "handoff.transferred": frozenset({"to"}),  # the colleague's public name, as in the text
    "handoff.transfer_ended": frozenset({"to"}),
    "rating": frozenset({"score", "scale", "comment"}),  # the visitor's own answer to "How did we do?"
}


def event_frame(event: Event, conversation: Conversation, *, team: bool = False) -> dict[str, Any]:
    """The ``event`` frame: the visitor's (the default) or, with ``team``, the console's with all of ``data``."""
    if team:
        # Minus the pipeline's routing mark: internal bookkeeping, of use to nobody reading the thread.
        data = {key: value for key, value in event.data.items() if key != ROUTED_TO_AI}
    else:
        allowed = VISITOR_DATA_KEYS.get(event.kind, frozenset())
        data = {key: value for key, value in event.data.items() if key in allowed}
    if isinstance(data.get("attachment"), dict):
        data["attachment"] = with_links(data["attachment"])  # signed links, fresh at each rendering
    return {
        "type": "event",
        "conversation": str(conversation.public_id),
        "seq": event.seq,
        "kind": event.kind,
        "author": event.author,
        "text": event.text,
        "agent": event.agent_name or None,
        "client_id": event.client_id,
        "data": data,
        "created_at": event.created_at.isoformat().replace("+00:00", "Z"),
    }
