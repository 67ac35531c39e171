"""What one widget connection (socket or SSE stream) relays of the frames meant for its visitor."""

from __future__ import annotations

from typing import Any

OPEN = "open"


class AiSilence:
    """Once a connection has relayed a state whose status is not ``open`` for a conversation, it
    relays no more ``ai.delta`` or AI ``typing`` frames of that conversation.

    The AI's worker reads the handoff request's silence key before each token, but a token it read
    the key for just before the request committed can still reach Redis after the request's state
    frame: the two come from different processes. Dropping it here keeps the wire silent. A
    conversation never returns to ``open`` (continuing with the AI starts a new one), so the set only
    grows, by one entry per handoff this connection has seen.
    """

    # One per idle widget socket: no instance dict, and the set is made on the first handoff only.
    __slots__ = ("_silenced",)

    def __init__(self) -> None:
        self._silenced: set[str] | None = None

    def allows(self, frame: dict[str, Any]) -> bool:
        """Whether to relay ``frame``; a frame carrying a state (state, welcome, switch, resync) is
        always relayed and is remembered."""
        state = frame.get("state")
        if isinstance(state, dict) and state.get("status") not in (None, OPEN):
            conversation = state.get("conversation")
            if isinstance(conversation, str):
                if self._silenced is None:
                    self._silenced = set()
                self._silenced.add(conversation)
        kind = frame.get("type")
        if kind == "ai.delta" or (kind == "typing" and frame.get("author") == "ai"):
            return not self._silenced or frame.get("conversation") not in self._silenced
        return True
