"""Hot-path reads of the handoff services, as rows of values (no ORM query built per call: on an
agent's reply that compilation cost more CPU than PostgreSQL's work)."""

from __future__ import annotations

import uuid
from datetime import timedelta

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone

from conversations.models import Conversation, Visitor

# The idle clock moves in steps of this much at most (see handoff/transitions/idle.py).
IDLE_CLOCK_STEP = timedelta(seconds=60)

# First statement: the conversation locked (as ``conversation_lock`` locks it), only when its handoff
# is in one of the agent's workspaces. Only the locked row is re-read once a waited-for lock is
# granted: any other table joined here would come from the statement's older snapshot (a resolve
# that committed meanwhile would still look active), so the handoff is read by the next statement.
_LOCK_SQL = """
SELECT c.id, c.public_id, c.chatbot_id, c.status, c.last_seq, v.id, v.public_id
FROM conversations_conversation c
JOIN conversations_visitor v ON v.id = c.visitor_id
WHERE c.public_id = %(public_id)s
  AND EXISTS (
    SELECT 1 FROM handoff_handoff h
    WHERE h.conversation_id = c.id
      AND h.workspace_id IN (SELECT m.workspace_id FROM chatbots_membership m WHERE m.user_id = %(user)s)
  )
"""
# Second statement, under the lock: READ COMMITTED takes a fresh snapshot per statement, so the
# handoff's status and assignee and a resend's stored event include everything committed before
# the lock was granted (a claim, a resolve, the first copy of a resent reply).
# The same statement starts the idle clock again (``last_message_at``, see handoff/transitions/idle.py)
# when the replying agent holds the live handoff: no round trip of its own. SKIP LOCKED, because the
# handoff row is locked before the conversation's everywhere else (the lock order): a transition that
# holds it is changing the handoff anyway, and this statement must never wait for it. Written at most
# once a minute (the idle limit is in minutes): most replies write nothing, and the indexed column
# then costs no index update per reply.
_TOUCH_SQL = """
UPDATE handoff_handoff SET last_message_at = %(now)s
WHERE id = (SELECT t.id FROM handoff_handoff t WHERE t.conversation_id = %(conversation)s
            AND t.status = 'active' AND t.claimed_by_id = %(user)s
            AND (t.last_message_at IS NULL OR t.last_message_at <= %(stale)s){skip_locked})
"""
_STATE_SQL = """
SELECT h.status, h.claimed_by_id,
       (SELECT e.id FROM conversations_event e WHERE e.conversation_id = h.conversation_id
        AND e.client_id = %(client_id)s)
FROM handoff_handoff h
WHERE h.conversation_id = %(conversation)s
"""
_TOUCH_AND_STATE_SQL = f"WITH touched AS ({_TOUCH_SQL.format(skip_locked=' FOR UPDATE SKIP LOCKED')}){_STATE_SQL}"


def reply_target(
    *, public_id: uuid.UUID, agent: User, client_id: str
) -> tuple[Conversation, str, int | None, int | None] | None:
    """(the locked conversation, its handoff's status and assignee, the id of the event stored with
    ``client_id``), or None when the agent has no such handoff. Two statements: lock, then read."""
    connection = transaction.get_connection()
    sql = _LOCK_SQL + (" FOR UPDATE OF c" if connection.features.has_select_for_update_of else "")
    public_id_field = Conversation._meta.get_field("public_id")
    with connection.cursor() as cursor:
        cursor.execute(sql, {"public_id": public_id_field.get_db_prep_value(public_id, connection), "user": agent.pk})
        locked = cursor.fetchone()
        if locked is None:
            return None
        conv_id, conv_public, chatbot_id, conv_status, last_seq, visitor_id, visitor_public = locked
        now = timezone.now()
        stale = now - IDLE_CLOCK_STEP
        params = {"client_id": client_id, "conversation": conv_id, "user": agent.pk, "now": now, "stale": stale}
        if connection.vendor == "postgresql":  # one statement: the touch as a data-modifying WITH
            cursor.execute(_TOUCH_AND_STATE_SQL, params)
        else:  # SQLite has one writer at a time and no WITH … UPDATE: two statements
            cursor.execute(_TOUCH_SQL.format(skip_locked=""), params)
            cursor.execute(_STATE_SQL, params)
        state = cursor.fetchone()
    if state is None:  # the handoff row cannot go while its conversation exists; not found all the same
        return None
    status, claimed_by, event = state
    visitor = Visitor(id=visitor_id, public_id=uuid.UUID(str(visitor_public)), chatbot_id=chatbot_id)
    conversation = Conversation(
        id=conv_id,
        public_id=uuid.UUID(str(conv_public)),
        chatbot_id=chatbot_id,
        visitor=visitor,
        status=conv_status,
        last_seq=last_seq,
    )
    conversation._state.adding = visitor._state.adding = False
    return conversation, status, claimed_by, event
