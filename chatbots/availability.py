"""A member's chosen status and capacity, and the live announcement of presence changes.

The chosen status is per membership: the sidebar control sets it for the workspace the console is
showing (someone in two teams may be Online for one and Away for the other). Every change is told to
the workspace's console sockets after commit, as ``{"type": "presence", "workspace": id}``; the
Conversations page re-reads its "Online now" list on it.
"""

from __future__ import annotations

import logging

import redis
from django.contrib.auth.models import User
from django.db import transaction
from django.utils.translation import gettext as _

from chatbots.models import Membership
from chatbots.presence import presence_sweep_workspace, presence_workspaces
from pivra.errors import DomainError, Forbidden, NotFound
from pivra.realtime import console_group, send_now_rollback_unsafe, send_on_commit
from pivra.widget.ratelimit import RateLimited, rate_limit_hit

logger = logging.getLogger(__name__)

MAX_LIVE_CHATS_LIMIT = 100  # a sanity bound: nobody holds more live chats than this at once
PRESENCE_FRAME = "presence"
# Each change is announced to every console of the workspace, and each of those pages re-reads its
# "Online now" list: a script (or a stuck key) flipping the status in a loop must not make every
# agent's page fetch. Counted per user, across workspaces; a person never needs more.
AVAILABILITY_CHANGES_PER_MINUTE = 20


class AvailabilityRateLimited(DomainError):
    status = 429

    def __init__(self, retry_after: int) -> None:
        super().__init__("rate_limited", f"You're changing your status too often. Try again in {retry_after} s.")
        self.retry_after = retry_after


def presence_frame(*, workspace_id: int) -> dict[str, object]:
    return {"type": PRESENCE_FRAME, "workspace": workspace_id}


def presence_announce_on_commit(*, workspace_id: int) -> None:
    send_on_commit([console_group(workspace_id)], presence_frame(workspace_id=workspace_id))


def _membership(*, user_id: int, workspace_id: int) -> Membership:
    membership = Membership.objects.select_for_update().filter(user_id=user_id, workspace_id=workspace_id).first()
    if membership is None:
        raise NotFound("not_found", _("You are not a member of that workspace."))
    return membership


def _count_availability_change(*, user_id: int) -> None:
    """Raise ``AvailabilityRateLimited`` past ``AVAILABILITY_CHANGES_PER_MINUTE``. Redis (the counter's
    store) out of reach lets the change through: it is stored in PostgreSQL, and a lost limit for a
    while costs less than refusing everyone their status."""
    try:
        rate_limit_hit(bucket=f"availability:u:{user_id}", limit=AVAILABILITY_CHANGES_PER_MINUTE)
    except RateLimited as exc:
        raise AvailabilityRateLimited(exc.retry_after) from None
    except redis.RedisError:
        logger.warning("availability change not rate-limited (Redis out of reach)")


def membership_set_availability(*, user: User, workspace_id: int, availability: str) -> Membership:
    """Set the user's chosen status in one workspace: online, away or offline. At most
    ``AVAILABILITY_CHANGES_PER_MINUTE`` calls a minute per user (429 ``rate_limited``)."""
    if availability not in Membership.Availability.values:
        choices = ", ".join(Membership.Availability.values)
        raise DomainError("invalid_availability", _("Availability must be one of: %(choices)s.") % {"choices": choices})
    _count_availability_change(user_id=user.pk)
    with transaction.atomic():
        membership = _membership(user_id=user.pk, workspace_id=workspace_id)
        if membership.availability != availability:
            membership.availability = availability
            membership.save(update_fields=["availability"])
            presence_announce_on_commit(workspace_id=workspace_id)
    return membership


def membership_set_max_live_chats(
    *, actor: User, workspace_id: int, membership_id: int, max_live_chats: int | None
) -> Membership:
    """An owner or admin sets a member's most simultaneous live chats (None: unlimited)."""
    if max_live_chats is not None and not 1 <= max_live_chats <= MAX_LIVE_CHATS_LIMIT:
        raise DomainError(
            "invalid_capacity",
            _("Max live chats must be between 1 and %(max)d, or empty for unlimited.") % {"max": MAX_LIVE_CHATS_LIMIT},
        )
    with transaction.atomic():
        acting = Membership.objects.filter(user=actor, workspace_id=workspace_id).first()
        if acting is None:
            raise NotFound("not_found", _("You are not a member of that workspace."))
        if not acting.can_manage:
            raise Forbidden("forbidden", _("Only workspace owners and admins can change a member's capacity."))
        membership = Membership.objects.select_for_update().filter(pk=membership_id, workspace_id=workspace_id).first()
        if membership is None:
            raise NotFound("not_found", _("No such member in this workspace."))
        if membership.max_live_chats != max_live_chats:
            membership.max_live_chats = max_live_chats
            membership.save(update_fields=["max_live_chats"])
            presence_announce_on_commit(workspace_id=workspace_id)
    return membership


def presence_sweep(*, now: float | None = None) -> int:
    """Drop dead console leases in every workspace and announce the ones someone left (beat runs it
    every ``settings.PRESENCE_SWEEP_SECONDS``). The number of members who went Offline."""
    departed = 0
    for workspace_id in presence_workspaces():
        gone = presence_sweep_workspace(workspace_id=workspace_id, now=now)
        if gone:
            departed += len(gone)
            send_now_rollback_unsafe([console_group(workspace_id)], presence_frame(workspace_id=workspace_id))
    return departed
