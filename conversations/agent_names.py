"""The name a visitor sees for an agent: never the username, which is a login credential's half."""

from __future__ import annotations

from typing import Any

UNNAMED_AGENT = "Support agent"


def agent_public_name(user: Any) -> str:
    """The agent's first name, else a neutral "Support agent" (the console shows teammates more)."""
    return str(user.first_name or "").strip() or UNNAMED_AGENT
