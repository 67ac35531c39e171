"""The console socket's two fire-and-forget frames: ``typing`` (the agent is typing a reply) and ``read``
(the agent has read a conversation up to a seq). Neither is answered: a refused one is dropped quietly,
since the page has nothing to do about it and an error would only interrupt the agent.

``typing`` is never stored: one read (is this agent the one holding the live chat, in a workspace they
are a member of?) and one publish to the visitor's widgets. ``read`` is one upsert
(``conversations.read_state``). Each has its own per-socket budget, taken before any query, so a hostile
page can flood neither Redis nor PostgreSQL, and neither eats into the budget of replies and claims.

Neither re-reads the socket's session per frame (the console consumer skips that check for these two):
each one's own statement re-checks what matters — the claim and the membership — so a removed member or
a released chat is refused at once, and a session that ended is cut by the consumer's periodic re-check
and the revocation nudge. One typing frame is at most one query.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from channels.db import database_sync_to_async
from channels.layers import BaseChannelLayer

from chatbots.models import Membership
from conversations.agent_names import agent_public_name
from conversations.read_state import conversation_mark_read
from handoff.models import Handoff
from pivra.console import frames
from pivra.console.command_pool import TokenBucket
from pivra.ids import parse_uuid
from pivra.realtime import EVENT_TYPE, visitor_group
from pivra.unavailable import is_unavailable

logger = logging.getLogger(__name__)

# The page sends at most one "typing on" every 2 s while keys are pressed, and an "off" on send, blur
# and after 5 s of silence: a burst of 6, then one a second, is more than an honest page ever needs.
TYPING_BURST = 6
TYPING_RATE_PER_SECOND = 1.0
# The page batches its read marks (one per burst of new events); switching between conversations
# quickly sends a few in a row.
READ_BURST = 10
READ_RATE_PER_SECOND = 1.0


@dataclass(frozen=True)
class TypingTarget:
    """Where an agent's typing goes: the visitor's widgets, and the name they show."""

    conversation: str
    visitor: str
    agent_name: str


@dataclass(frozen=True)
class _Named:
    first_name: str | None


def agent_typing_target(*, user_id: int, conversation_public_id: str) -> TypingTarget | None:
    """The live chat ``user_id`` holds in this conversation (the handoff is active and claimed by them,
    in one of their workspaces), or None: typing of anyone else never reaches the visitor. One read."""
    key = parse_uuid(conversation_public_id)
    if key is None:
        return None
    row = (
        Handoff.objects.filter(
            conversation__public_id=key,
            status=Handoff.Status.ACTIVE,
            claimed_by_id=user_id,
            workspace_id__in=Membership.objects.filter(user_id=user_id).values("workspace_id"),
        )
        .values_list("conversation__visitor__public_id", "claimed_by__first_name")
        .first()
    )
    if row is None:
        return None
    visitor_id, first_name = row
    # The name exactly as the rest of the widget shows this agent (state "agent", event "agent").
    name = agent_public_name(_Named(first_name))
    return TypingTarget(conversation=str(key), visitor=str(visitor_id), agent_name=name)


def agent_typing_frame(target: TypingTarget, *, on: bool) -> dict[str, object]:
    """The widget's ``typing`` frame (``static/widget/chat/typing.js``) for an agent."""
    return {
        "type": "typing",
        "conversation": target.conversation,
        "author": "agent",
        "on": on,
        "agent": target.agent_name,
    }


class LiveMarks:
    """One console socket's ``typing`` and ``read`` frames, each within its own budget."""

    def __init__(self, *, user_id: int, layer: BaseChannelLayer) -> None:
        self.user_id = user_id
        self.layer = layer
        self._typing_budget = TokenBucket(burst=TYPING_BURST, rate=TYPING_RATE_PER_SECOND)
        self._read_budget = TokenBucket(burst=READ_BURST, rate=READ_RATE_PER_SECOND)

    async def handle(self, frame: frames.Typing | frames.Read) -> None:
        """One frame, never answered: a failure is logged (the frame type only) and dropped; PostgreSQL
        or Redis out of reach is raised, so the socket closes with 4503 and the page reconnects."""
        try:
            await (self.typing(frame) if isinstance(frame, frames.Typing) else self.read(frame))
        except Exception as exc:
            if is_unavailable(exc):
                raise
            logger.warning("console %s frame failed", frame.type, exc_info=True)

    async def typing(self, frame: frames.Typing) -> bool:
        """Relay the agent's typing to the visitor's widgets; False when dropped (over budget, or not
        the agent holding this live chat)."""
        if not self._typing_budget.take():
            return False
        target = await database_sync_to_async(agent_typing_target)(
            user_id=self.user_id, conversation_public_id=str(frame.conversation_id)
        )
        if target is None:
            return False
        message = {"type": EVENT_TYPE, "frame": agent_typing_frame(target, on=frame.on)}
        await self.layer.group_send(visitor_group(target.visitor), message)
        return True

    async def read(self, frame: frames.Read) -> int | None:
        """Move the agent's read mark of the conversation; the new mark, or None when nothing moved."""
        if not self._read_budget.take():
            return None
        return await database_sync_to_async(conversation_mark_read)(
            user_id=self.user_id, conversation_public_id=str(frame.conversation_id), seq=frame.seq
        )
