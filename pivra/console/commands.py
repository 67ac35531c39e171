"""What the console socket's ``reply`` and ``claim`` frames do, run on a database thread.

The same services as the console API (``handoff.api``: ``handoff_reply``, ``handoff_claim``) with the
same answer bodies, so the rules live in one place: who may reply or claim, idempotency by client id
(a resent reply is stored once), the not-found answer for another workspace's conversation. The
socket's session is re-checked first, in the same database call (one thread hop per command, not
two), and the command then acts as the user that check has just loaded — an agent deactivated or
signed out since the handshake is refused here as an HTTP request would be.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from typing import Any

from django.core.serializers.json import DjangoJSONEncoder

from handoff.api import claim_body, reply_body
from handoff.transitions.claim import handoff_claim
from handoff.transitions.reply import handoff_reply
from pivra.console import frames
from pivra.console.session_validity import SessionValidity, session_validity
from pivra.errors import DomainError

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
        validity = session_validity(session_key=session_key, user_id=user_id)
    except Exception:  # the database or the session store is down: the consumer counts the failure
        logger.warning("could not re-validate the session of a console socket's command", exc_info=True)
        return CommandOutcome(validity=None)
    if not validity.valid:
        return CommandOutcome(validity=validity)
    agent = validity.user
    conversation_id = str(frame.conversation_id)
    try:
        if isinstance(frame, frames.Reply):
            received = handoff_reply(
                agent=agent, conversation_public_id=conversation_id, text=frame.text, client_id=frame.client_id
            )
            answer = {"type": "ack", **reply_body(received)}
        else:
            handoff = handoff_claim(agent=agent, conversation_public_id=conversation_id)
            # The HTTP answer's body, its datetimes as the API writes them.
            handoff_json = json.loads(json.dumps(claim_body(handoff), cls=DjangoJSONEncoder))
            answer = {"type": "ack", "client_id": frame.client_id, "handoff": handoff_json}
    except DomainError as exc:
        answer = {"type": "error", **exc.as_dict(), "client_id": frame.client_id}
    return CommandOutcome(validity=validity, answer=answer)
