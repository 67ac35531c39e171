"""The visitor-facing transcript of a conversation: what the visitor saw in the chat, as an email.

It reads the event log only, and only the messages of the visitor, the AI and the agents (an
attachment by its name and size): internal notes are a separate model (``Note``) this module never
touches, and system lines and every event's internal ``data`` stay out. Bounded: the last
``MAX_LINES`` messages, at most ``MAX_CHARS`` of text, with a line saying earlier ones were left
out. Pure: no I/O but reads."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from django.db.models import Q
from django.template.loader import render_to_string
from django.utils.translation import gettext as _
from django.utils.translation import gettext_noop

from conversations.agent_names import UNNAMED_AGENT
from conversations.models import Conversation, Event
from pivra.attachment_links import attachment_label

SUBJECT_MAX = 150
MAX_LINES = 500
MAX_CHARS = 500_000  # about 500 KB of message text per part
OMITTED = gettext_noop("Earlier messages omitted")  # worded under the conversation's language
_AUTHORS = (Event.Author.VISITOR, Event.Author.AI, Event.Author.AGENT)
# Control characters (CR and LF above all: a header is one line), runs of whitespace, and the
# invisible format and bidi-override characters that would make a subject read other than it is.
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u2028\u2029\u200b-\u200f\u202a-\u202e\u2060-\u206f\ufeff]+")


@dataclass(frozen=True)
class TranscriptLine:
    author: str  # visitor | ai | agent
    label: str  # "You", the chatbot's name, the agent's public name
    text: str
    attachment: str  # "📎 name (size)", or ""
    at: datetime

    @property
    def time(self) -> str:
        return self.at.astimezone(UTC).strftime("%H:%M")

    @property
    def text_indented(self) -> str:
        """The text part's message: every line after the first indented, so a line a visitor typed
        can never pass for another speaker's "[12:00] Alice:" line."""
        return "\n    ".join(self.text.splitlines())


def one_line(value: str, limit: int) -> str:
    """``value`` safe for an email header: control and format characters and newlines gone, spaces
    collapsed, bounded."""
    text = " ".join(_CONTROL.sub(" ", value or "").split())
    return text if len(text) <= limit else text[: limit - 1] + "\u2026"


def transcript_subject(*, conversation: Conversation) -> str:
    name = one_line(conversation.chatbot.name, 80)
    if not name:
        return one_line(_("Your conversation with us"), SUBJECT_MAX)
    return one_line(_("Your conversation with %(chatbot)s") % {"chatbot": name}, SUBJECT_MAX)


def _attachment_name(data: dict[str, Any]) -> str:
    attachment = data.get("attachment") if isinstance(data, dict) else None
    if not isinstance(attachment, dict):
        return ""
    return str(attachment.get("name") or "attachment")


def _line(event: Event, bot: str) -> TranscriptLine:
    name = _attachment_name(event.data)
    if event.author == Event.Author.VISITOR:
        label = _("You")
    elif event.author == Event.Author.AI:
        label = bot
    else:
        label = event.agent_name or UNNAMED_AGENT  # stored as the visitor saw it (agent_names.py)
    # A file's message carries its name as text too (attachments): say it once.
    text = "" if name and event.text.strip() == name else event.text
    attachment = one_line(attachment_label(event.data) or "", 260) if name else ""
    return TranscriptLine(str(event.author), label, text, attachment, event.created_at)


def transcript_lines(*, conversation: Conversation) -> tuple[list[TranscriptLine], bool]:
    """The messages, oldest first, and whether earlier ones were left out (the bounds)."""
    bot = one_line(conversation.chatbot.name, 80) or _("Assistant")
    events = (
        Event.objects.filter(conversation=conversation, author__in=_AUTHORS)
        .filter(Q(kind="message") | Q(data__has_key="attachment"))  # offers, answers, ratings stay out
        .order_by("-seq")
        .only("kind", "author", "text", "agent_name", "data", "created_at")
    )
    lines: list[TranscriptLine] = []
    size = 0
    omitted = False
    for event in events[: MAX_LINES + 1].iterator(chunk_size=100):
        size += len(event.text) + 200
        if len(lines) == MAX_LINES or size > MAX_CHARS:
            omitted = True
            break
        lines.append(_line(event, bot))
    lines.reverse()
    return lines, omitted


def transcript_render(*, conversation: Conversation) -> tuple[str, str, str]:
    """(subject, text, html) of the transcript; the HTML is rendered with autoescaping on."""
    lines, omitted = transcript_lines(conversation=conversation)
    context = {
        "chatbot": one_line(conversation.chatbot.name, 80) or _("Assistant"),
        "started": conversation.created_at.astimezone(UTC),
        "lines": lines,
        "omitted": _(OMITTED) if omitted else "",
    }
    text = render_to_string("conversations/email/transcript.txt", context)
    html = render_to_string("conversations/email/transcript.html", context)
    return transcript_subject(conversation=conversation), text, html
