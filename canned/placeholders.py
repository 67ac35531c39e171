"""Placeholders of a canned reply (``{{visitor.name}}``…): a fixed set of known fields, nothing else.

A reply is filled on the server for one conversation, from values the workspace already shows its
agents, and the composer inserts the result as plain text. Nothing is evaluated: a placeholder is a
lookup in a fixed table, an unknown one is refused when the reply is saved, and a known one with no
value becomes empty (never a literal ``{{…}}`` in front of a visitor).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from conversations.agent_names import agent_public_name
from conversations.models import Conversation

# Every ``{{ … }}``: the braces and what is between them (no nested braces, bounded).
PLACEHOLDER = re.compile(r"\{\{\s*([^{}]{0,60}?)\s*\}\}")
KNOWN_PLACEHOLDERS: dict[str, str] = {
    "visitor.name": "The visitor's name, when they left one",
    "visitor.email": "The visitor's email address, when they left one",
    "visitor.mobile": "The mobile number the visitor left (lead capture)",
    "agent.name": "Your first name, as visitors see it",
    "workspace.name": "This workspace's name",
}


def placeholders_unknown(text: str) -> list[str]:
    """The placeholders in ``text`` that are not known fields, in order, each once."""
    unknown: list[str] = []
    for match in PLACEHOLDER.finditer(text):
        name = match.group(1).strip()
        if name not in KNOWN_PLACEHOLDERS and name not in unknown:
            unknown.append(name)
    return unknown


def placeholders_stray_braces(text: str) -> bool:
    """``text`` still holds "{{" or "}}" once its placeholders are taken out: an unclosed, nested or
    overlong one (it would reach the visitor as typed)."""
    rest = PLACEHOLDER.sub("", text)
    return "{{" in rest or "}}" in rest


def placeholder_values(*, conversation: Conversation, agent: Any) -> dict[str, str]:
    """The known fields' values for one conversation and one agent ("" when there is none)."""
    lead = conversation.lead if isinstance(conversation.lead, dict) else {}

    def lead_text(key: str) -> str:
        value = lead.get(key)
        return value.strip() if isinstance(value, str) else ""

    return {
        "visitor.name": lead_text("name"),
        "visitor.email": lead_text("email"),
        # The phone capture stores the E.164 number as lead["phone"] (handoff.transitions.lead).
        "visitor.mobile": lead_text("phone"),
        "agent.name": agent_public_name(agent) if agent is not None else "",
        "workspace.name": conversation.chatbot.workspace.name,
    }


def canned_fill(*, text: str, values: dict[str, str]) -> str:
    """``text`` with each placeholder replaced by its value, in one pass (a value that looks like a
    placeholder stays as it is); an unknown or empty one becomes empty."""
    return canned_fill_report(text=text, values=values).text


@dataclass(frozen=True)
class Filled:
    text: str
    # The placeholders that had no value here (each once, in order): the agent is warned.
    missing: list[str]
    # Where in ``text`` the first of them left its gap (None: none did), for the composer's caret.
    gap_at: int | None


def canned_fill_report(*, text: str, values: dict[str, str]) -> Filled:
    """``canned_fill``, saying which placeholders came out empty and where the first one went."""
    parts: list[str] = []
    missing: list[str] = []
    gap_at: int | None = None
    length = position = 0
    for match in PLACEHOLDER.finditer(text):
        before = text[position : match.start()]
        parts.append(before)
        length += len(before)
        name = match.group(1).strip()
        value = values.get(name, "")
        if not value:
            if gap_at is None:
                gap_at = length
            if name not in missing:
                missing.append(name)
        parts.append(value)
        length += len(value)
        position = match.end()
    parts.append(text[position:])
    return Filled(text="".join(parts), missing=missing, gap_at=gap_at)
