"""The claiming agent puts a live conversation back in the queue (``requeue``: the one transition
back to waiting)."""

from __future__ import annotations

from datetime import datetime

from django.contrib.auth.models import User
from django.utils.translation import gettext as _

from handoff.models import Handoff
from handoff.state import agent_display_name
from handoff.transitions.requeue import REASON_RELEASED, handoff_requeue
from handoff.transitions.shared import agent_handoff
from pivra.errors import Conflict, Forbidden


def handoff_release(*, agent: User, conversation_public_id: str, now: datetime | None = None) -> Handoff:
    """Active (claimed by ``agent``) → pending; first claim wins again."""
    handoff = agent_handoff(agent=agent, conversation_public_id=conversation_public_id)
    released = handoff_requeue(
        handoff_id=handoff.pk, reason=REASON_RELEASED, actor=agent, now=now, claimed_by_id=agent.pk
    )
    handoff = Handoff.objects.select_related("claimed_by").get(pk=handoff.pk)
    if not released:
        if handoff.status == Handoff.Status.RESOLVED:
            raise Conflict("handoff_resolved", _("This handoff is already resolved."))
        if handoff.status == Handoff.Status.ACTIVE:
            holder = agent_display_name(handoff.claimed_by) or _("another agent")
            raise Forbidden(
                "not_assignee",
                _("Only %(holder)s, who claimed this conversation, can release it.") % {"holder": holder},
            )
        raise Conflict("not_claimed", _("This conversation is already waiting in the queue."))
    return handoff
