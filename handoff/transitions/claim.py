"""An agent claims a handoff: first claim wins, pending or busy (a late claim), the others get 409."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Coalesce, Greatest
from django.utils import timezone

from actions.events import EventType
from conversations.agent_names import agent_public_name
from conversations.models import Event
from conversations.services import conversation_lock, event_append
from handoff.models import Handoff
from handoff.state import agent_display_name
from handoff.transitions.shared import OPEN_STATUSES, agent_handoff, announce_state, outbox_handoff_event
from pivra.errors import Conflict


def handoff_claim(*, agent: User, conversation_public_id: str, now: datetime | None = None) -> Handoff:
    """Exactly one concurrent caller wins; the others get 409 naming who holds it."""
    now = now or timezone.now()
    handoff = agent_handoff(agent=agent, conversation_public_id=conversation_public_id)
    with transaction.atomic():
        won = Handoff.objects.filter(pk=handoff.pk, status__in=OPEN_STATUSES).update(
            status=Handoff.Status.ACTIVE,
            claimed_by=agent,
            # ``now`` was taken before this update may have waited on an expiry holding the row; a
            # claim that lands after a timeout must not be dated before it.
            claimed_at=Greatest(Value(now), Coalesce(F("timed_out_at"), Value(now))),
        )
        if not won:
            # The losers of a claim storm: one read says who holds it (with the holder's name).
            handoff = Handoff.objects.select_related("claimed_by").get(pk=handoff.pk)
            if handoff.status == Handoff.Status.ACTIVE and handoff.claimed_by_id == agent.pk:
                return handoff
            if handoff.status == Handoff.Status.ACTIVE:
                holder = agent_display_name(handoff.claimed_by)
                raise Conflict("already_claimed", f"Already claimed by {holder}.")
            raise Conflict("handoff_resolved", "This handoff is already resolved.")
        handoff.refresh_from_db()  # timed_out_at may have been set since it was read (a late claim)
        handoff.claimed_by = agent  # the row now says so; spares a query when the state is built
        conversation = conversation_lock(conversation_id=handoff.conversation_id)
        late = handoff.timed_out_at is not None
        name = agent_public_name(agent)  # the visitor reads this line
        event_append(
            conversation=conversation,
            kind="handoff.claimed",
            author=Event.Author.SYSTEM,
            text=f"{name} joined the conversation.",
            agent=agent,
            data={"late": late},
            notify_console=True,
        )
        outbox_handoff_event(EventType.HANDOFF_CLAIMED, conversation, handoff, late=late)
        announce_state(conversation=conversation, handoff=handoff)
    return handoff
