"""The visitor's live marks, for the socket and its HTTP twins: ``typing`` (relayed to the agents watching
the conversation, never stored) and ``seen`` (one guarded write, ``conversations.read_state``).

What the visitor has typed but not sent is theirs: it reaches the agents only when the chatbot's owner
turned ``Chatbot.typing_preview`` on, and only here, on the server, is that decided — a ``text`` sent
while the setting is off is dropped, whatever the widget believes. The preview is cut to
``PREVIEW_MAX_CHARS``.

Budgets, all taken before any query: each socket has its own token buckets (typing, seen), and every
socket and HTTP twin of one visitor, and of one IP, share the per-minute buckets in Redis (keys by the
visitor's pk, so a socket that keeps only the pk needs no visitor load). Over budget a socket's frame is
dropped unanswered; the HTTP typing twin answers 429 (the widget ignores it), the seen twin drops it.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings

from conversations.models import Conversation
from conversations.read_state import conversation_mark_seen_by_visitor
from pivra.console.command_pool import TokenBucket
from pivra.ids import parse_uuid
from pivra.inputs import strip_unstorable
from pivra.realtime import conversation_group, send_now_rollback_unsafe
from pivra.widget.ratelimit import RateLimited, rate_limit_hit

PREVIEW_MAX_CHARS = 1000
# The widget sends "typing" at most once a second while keys are pressed (with the preview: the text so
# far), and an "off" on send, blur and silence. Shared by every socket and process of a visitor (Redis).
TYPING_PER_MINUTE = 90
# "seen" is batched by the widget (one report per burst of agent messages it shows).
SEEN_PER_MINUTE = 30
TYPING_BURST = 6
TYPING_RATE_PER_SECOND = 1.5
SEEN_BURST = 5
SEEN_RATE_PER_SECOND = 0.5
_TYPING_WHAT = "typing updates"
_SEEN_WHAT = "read receipts"


def typing_bucket() -> TokenBucket:
    """A widget socket's own typing budget: over it, frames are dropped before any query or publish."""
    return TokenBucket(burst=TYPING_BURST, rate=TYPING_RATE_PER_SECOND)


def seen_bucket() -> TokenBucket:
    """A widget socket's own "seen" budget: over it, reports are dropped before any query."""
    return TokenBucket(burst=SEEN_BURST, rate=SEEN_RATE_PER_SECOND)


def _typing_limits(*, visitor_id: int, ip: str | None) -> None:
    rate_limit_hit(bucket=f"typing:v:{visitor_id}", limit=TYPING_PER_MINUTE, what=_TYPING_WHAT)
    if ip:
        rate_limit_hit(bucket=f"typing:ip:{ip}", limit=settings.RATE_IP_PER_MINUTE, what=_TYPING_WHAT)


def widget_typing_frame(
    *, visitor_id: int, conversation: str, on: bool, text: str | None
) -> tuple[str, dict[str, Any]] | None:
    """(the group of the agents watching, the console's ``typing`` frame), or None when there is nobody
    to tell: not the visitor's conversation, or no handoff in it (the AI reads no typing). One read."""
    key = parse_uuid(conversation)
    if key is None:
        return None
    row = (
        Conversation.objects.filter(visitor_id=visitor_id, public_id=key)
        .values_list("status", "chatbot__typing_preview")
        .first()
    )
    if row is None or row[0] != Conversation.Status.HANDOFF:
        return None
    preview = row[1]
    frame: dict[str, Any] = {"type": "typing", "conversation": str(key), "author": "visitor", "on": bool(on)}
    if preview and on and text:
        shown = strip_unstorable(text)[:PREVIEW_MAX_CHARS]
        if shown.strip():
            frame["text"] = shown
    return conversation_group(key), frame


def widget_typing_admitted(
    *, visitor_id: int, conversation: str, on: bool, text: str | None, ip: str | None = None
) -> tuple[str, dict[str, Any]] | None:
    """The socket's ``typing``: within the visitor's and the IP's shared budgets, what to publish (as
    ``widget_typing_frame``); over them, None (dropped unanswered, as a frame over the socket's own)."""
    try:
        _typing_limits(visitor_id=visitor_id, ip=ip)
    except RateLimited:
        return None
    return widget_typing_frame(visitor_id=visitor_id, conversation=conversation, on=on, text=text)


def widget_typing(*, visitor_id: int, conversation: str, on: bool, text: str | None, ip: str | None = None) -> None:
    """The HTTP twin of the socket's ``typing`` frame: publish only, within the same shared budgets
    (429 over them; the widget ignores it)."""
    _typing_limits(visitor_id=visitor_id, ip=ip)
    found = widget_typing_frame(visitor_id=visitor_id, conversation=conversation, on=on, text=text)
    if found is not None:
        group, frame = found
        send_now_rollback_unsafe([group], frame)


def widget_seen(*, visitor_id: int, conversation: str, seq: int, ip: str | None = None) -> int | None:
    """The visitor has seen ``conversation`` up to ``seq``: the new ``visitor_seen_seq``, or None when it
    did not move. Over its own budget a report is dropped, not refused (as a page report): the next batch
    carries a higher seq anyway, and an error would interrupt the chat for a background update."""
    try:
        rate_limit_hit(bucket=f"seen:v:{visitor_id}", limit=SEEN_PER_MINUTE, what=_SEEN_WHAT)
        if ip:
            rate_limit_hit(bucket=f"seen:ip:{ip}", limit=settings.RATE_IP_PER_MINUTE, what=_SEEN_WHAT)
    except RateLimited:
        return None
    return conversation_mark_seen_by_visitor(visitor_id=visitor_id, conversation_public_id=conversation, seq=seq)
