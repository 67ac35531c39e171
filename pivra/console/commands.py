"""What the console socket's commands do (``reply``, ``claim``, ``release``, ``transfer``, ``take_over``,
``accept`` — a claim — ``decline`` and ``note``), run on a database thread.

The same services as the console API (``handoff.api``: ``handoff_reply``, ``handoff_claim``) with the
same answer bodies, so the rules live in one place: who may reply or claim, idempotency by client id
(a resent reply is stored once), the not-found answer for another workspace's conversation. The
socket's session is re-checked first, in the same database call (one thread hop per command, not
two), and the command then acts as the user that check has just loaded — an agent deactivated or
signed out since the handshake is refused here as an HTTP request would be.

PostgreSQL out of reach mid-command is no failure of the command: it raises, and the consumer answers
``unavailable`` (the page sends it again with the same client id). A pooled connection from before a
PostgreSQL restart fails on its first use — the session check — and that check alone is tried once
more on a fresh connection, so the first commands after a restart do not fail once per stale connection.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.serializers.json import DjangoJSONEncoder
from django.db import connection
from django.utils import translation
from psycopg_pool import PoolTimeout

from accounts.languages import agent_language
from conversations.notes import note_ack, note_add
from handoff.api import claim_body, reply_body
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from handoff.transitions.offers import handoff_offer_decline
from handoff.transitions.release import handoff_release
from handoff.transitions.reply import handoff_reply
from handoff.transitions.takeover import handoff_take_over
from handoff.transitions.transfer import handoff_transfer
from pivra.console import frames
from pivra.console.session_validity import SessionValidity, session_validity
from pivra.errors import DomainError
from pivra.unavailable import caused_by, is_database_unavailable

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class CommandOutcome:
    # None: the session could not be checked (the store is failing); invalid: the session ended.
    validity: SessionValidity | None
    # The frame for the page (``ack`` or ``error``), when the command ran.
    answer: dict[str, Any] | None = None


def console_command(*, session_key: str | None, user_id: int, frame: frames.Command) -> CommandOutcome:
    """Re-check the session, then run the command as its user; a refusal is an ``error`` frame."""
    try:
        validity = _session_validity(session_key=session_key, user_id=user_id)
    except Exception:  # the database or the session store is down: the consumer counts the failure
        logger.warning("could not re-validate the session of a console socket's command", exc_info=True)
        return CommandOutcome(validity=None)
    if not validity.valid:
        return CommandOutcome(validity=validity)
    agent = validity.user
    # The refusal's words in the agent's chosen console language (a socket has no LocaleMiddleware).
    with translation.override(agent_language(user=agent) or settings.LANGUAGE_CODE):
        answer = _answer(agent=agent, frame=frame)
    return CommandOutcome(validity=validity, answer=answer)


def _answer(*, agent: User, frame: frames.Command) -> dict[str, Any]:
    conversation_id = str(frame.conversation_id)
    try:
        if isinstance(frame, frames.Reply):
            received = handoff_reply(
                agent=agent, conversation_public_id=conversation_id, text=frame.text, client_id=frame.client_id
            )
            answer = {"type": "ack", **reply_body(received)}
        elif isinstance(frame, frames.AddNote):
            created = note_add(
                author=agent, conversation_public_id=conversation_id, text=frame.text, client_id=frame.client_id
            )
            answer = {"type": "ack", **note_ack(created)}
        else:
            handoff = _handoff_command(agent=agent, conversation_id=conversation_id, frame=frame)
            # The HTTP answer's body, its datetimes as the API writes them.
            handoff_json = json.loads(json.dumps(claim_body(handoff), cls=DjangoJSONEncoder))
            answer = {"type": "ack", "client_id": frame.client_id, "handoff": handoff_json}
    except DomainError as exc:
        answer = {"type": "error", **exc.as_dict(), "client_id": frame.client_id}
    return answer


def _session_validity(*, session_key: str | None, user_id: int) -> SessionValidity:
    """``session_validity``, the command's first query: on a connection a PostgreSQL restart closed it
    fails before anything ran, so it is safe to run again, once, on a fresh connection."""
    try:
        return session_validity(session_key=session_key, user_id=user_id)
    except Exception as exc:
        if not connection_broke(exc):
            raise
    connection.close()  # hands the dead connection back: the pool drops it, the next one is new
    return session_validity(session_key=session_key, user_id=user_id)


def connection_broke(exc: BaseException) -> bool:
    """The connection this thread held is dead — not "no connection could be had" (the pool's wait
    ran out: PostgreSQL is down), which a second try would only wait for again."""
    return is_database_unavailable(exc) and not caused_by(exc, PoolTimeout)


def _handoff_command(*, agent: User, conversation_id: str, frame: frames.Command) -> Handoff:
    """The handoff commands besides reply; each answers with the handoff as its HTTP route does."""
    if isinstance(frame, frames.Release):
        return handoff_release(agent=agent, conversation_public_id=conversation_id)
    if isinstance(frame, frames.Transfer):
        return handoff_transfer(agent=agent, conversation_public_id=conversation_id, to_user_id=frame.to_user_id)
    if isinstance(frame, frames.TakeOver):
        return handoff_take_over(agent=agent, conversation_public_id=conversation_id)
    if isinstance(frame, frames.Decline):
        return handoff_offer_decline(agent=agent, conversation_public_id=conversation_id)
    return handoff_claim(agent=agent, conversation_public_id=conversation_id)  # claim, or accept an offer
