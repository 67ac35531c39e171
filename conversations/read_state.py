"""Read state: how far the visitor has seen a conversation ("Seen" in the console) and how far each agent
has read it (the unread counts of the Conversations list).

Both marks only move forward and are clamped to the conversation's ``last_seq``, so a client cannot mark
what does not exist yet; each batch of the client's reports is one statement — the guard is in its
``WHERE``, so a report that moves nothing writes nothing. The broadcast goes out on commit.
"""

from __future__ import annotations

from django.db import connection
from django.utils import timezone

from pivra.console.revocation import console_user_group
from pivra.ids import parse_uuid
from pivra.inputs import MAX_SEQ, parse_int
from pivra.realtime import conversation_group, send_on_commit


def _clean_seq(seq: int | str | None) -> int | None:
    return parse_int(seq, min_value=1, max_value=MAX_SEQ)


# One statement: the visitor's own conversation, clamped to last_seq, forward only (the guard is in the
# WHERE, so a report that moves nothing writes nothing). ``updated_at`` is left alone: being seen is no
# activity, and the Open tab sorts by it.
_MARK_SEEN_SQL = """
UPDATE conversations_conversation SET visitor_seen_seq = LEAST(%(seq)s, last_seq)
WHERE visitor_id = %(visitor)s AND public_id = %(public_id)s AND visitor_seen_seq < LEAST(%(seq)s, last_seq)
RETURNING visitor_seen_seq
"""


def conversation_mark_seen_by_visitor(*, visitor_id: int, conversation_public_id: str, seq: int) -> int | None:
    """Visitor ``visitor_id`` has seen their conversation up to ``seq`` (the widget open and the page
    visible). The pk is enough: the statement itself scopes the row to that visitor.

    One guarded UPDATE of the visitor's own conversation: forward only, never past ``last_seq``. Returns
    the new ``visitor_seen_seq``, or None when nothing moved (an older report, someone else's
    conversation, a seq that is not a number). Agents watching the conversation hear ``seen`` on commit."""
    key = parse_uuid(conversation_public_id)
    value = _clean_seq(seq)
    if key is None or value is None:
        return None
    # One statement needs no transaction of its own: in autocommit it commits as it runs (and the
    # broadcast follows at once); inside a caller's transaction the broadcast waits for its commit.
    with connection.cursor() as cursor:
        cursor.execute(_MARK_SEEN_SQL, {"seq": value, "visitor": visitor_id, "public_id": key})
        row = cursor.fetchone()
    if row is None:
        return None
    new_seq = int(row[0])
    send_on_commit([conversation_group(key)], {"type": "seen", "conversation": str(key), "seq": new_seq})
    return new_seq


# One statement: the membership check, the clamp to last_seq and the forward-only guard. A member of
# another workspace matches no row and writes nothing; a report that does not move the mark updates no
# row (the ON CONFLICT's WHERE), so RETURNING is empty.
_MARK_READ_SQL = """
INSERT INTO conversations_conversationread (user_id, conversation_id, last_read_seq, updated_at)
SELECT %(user)s, c.id, LEAST(%(seq)s, c.last_seq), %(now)s
FROM conversations_conversation c
JOIN chatbots_chatbot b ON b.id = c.chatbot_id
WHERE c.public_id = %(public_id)s
  AND EXISTS (SELECT 1 FROM chatbots_membership m WHERE m.user_id = %(user)s AND m.workspace_id = b.workspace_id)
ON CONFLICT (user_id, conversation_id) DO UPDATE
    SET last_read_seq = EXCLUDED.last_read_seq, updated_at = EXCLUDED.updated_at
    WHERE conversations_conversationread.last_read_seq < EXCLUDED.last_read_seq
RETURNING last_read_seq
"""


def conversation_mark_read(*, user_id: int, conversation_public_id: str, seq: int) -> int | None:
    """User ``user_id`` has read the conversation up to ``seq`` (its page open and visible in their console).

    One upsert of their ``ConversationRead``: forward only, never past ``last_seq``, only in a workspace
    they are a member of. Returns the new ``last_read_seq``, or None when nothing moved. The user's own
    console pages hear ``read`` on commit (their list clears the unread count)."""
    key = parse_uuid(conversation_public_id)
    value = _clean_seq(seq)
    if key is None or value is None:
        return None
    with connection.cursor() as cursor:  # one statement: no transaction of its own (as above)
        cursor.execute(_MARK_READ_SQL, {"user": user_id, "seq": value, "now": timezone.now(), "public_id": key})
        row = cursor.fetchone()
    if row is None:
        return None
    last_read = int(row[0])
    frame = {"type": "read", "conversation": str(key), "last_read_seq": last_read}
    send_on_commit([console_user_group(user_id)], frame)
    return last_read
