"""The unread count of the Conversations list: per conversation, the visitor messages the signed-in agent
has not read (after their ``ConversationRead.last_read_seq``; ``conversations.read_state`` moves it)."""

from __future__ import annotations

from django.db.models import IntegerField, OuterRef, Subquery, Value
from django.db.models.functions import Coalesce

from conversations.models import ConversationRead, Event

# Counted up to this many, shown as "99+" (templates/console/unread_badge.html): a conversation with
# thousands of unread messages costs the list no more than one with a hundred.
UNREAD_CAP = 100


class _CappedCount(Subquery):
    """COUNT(*) over a (sliced) subquery: the count stops at the slice instead of reading every row."""

    template = "(SELECT COUNT(*) FROM (%(subquery)s) AS capped)"
    output_field = IntegerField()


def unread_count(*, user_id: int) -> Coalesce:
    """Visitor messages after the user's read mark (``conversations.read_state``), per conversation, at
    most ``UNREAD_CAP``: a correlated count read from the partial index ``event_visitor_msg_seq`` (visitor
    messages only, by conversation and seq), so the list stays one query whatever its rows hold."""
    read_to = ConversationRead.objects.filter(conversation=OuterRef(OuterRef("pk")), user_id=user_id).values(
        "last_read_seq"
    )[:1]
    unread = (
        Event.objects.filter(
            conversation=OuterRef("pk"),
            author=Event.Author.VISITOR,
            kind="message",  # what an agent has to read; the index's condition, spelled the same way
            seq__gt=Coalesce(Subquery(read_to), Value(0)),
        )
        .order_by()
        .values("seq")[:UNREAD_CAP]
    )
    return Coalesce(_CappedCount(unread), Value(0))
