"""Who is online: each member's chosen status (``Membership.availability``) and their open console sockets.

A member is *effectively* Online when they chose Online AND at least one of their console sockets is
open — or the last one closed less than ``PIVRA_PRESENCE_GRACE_SECONDS`` ago, so a reload or a
short network blip is not a departure. Away (chosen, with a socket open) takes no new chats; anyone
with no socket left past the grace is Offline whatever they chose.

Sockets are kept in Redis as leases, not a counter: several daphne processes hold sockets and one
may be SIGKILLed without running ``disconnect``, so a count would drift for ever. Each (workspace,
user) has a sorted set ``<prefix>:presence:<workspace id>:<user id>`` of that user's socket ids,
scored with the time until which the socket is known alive: an open socket refreshes its score to
now + ``LEASE_SECONDS`` every ``REFRESH_SECONDS``; a closing socket sets it to now. A lease counts
while ``score + grace > now``: a closed socket for the grace, a killed one for its lease and the grace.
Each workspace has a sorted set ``<prefix>:presence:<workspace id>`` of user ids scored with their
latest lease end, kept by the same scripts: "who is present" reads one entry per member, and a
refresh touches only its own user's sets — its cost does not grow with the workspace's sockets.
A beat sweep (``chatbots.availability.presence_sweep``, every ``PRESENCE_SWEEP_SECONDS``) drops dead
users and announces who went Offline. A user holds at most ``MAX_SOCKETS_PER_USER`` console sockets
(``presence_admit``; ``<prefix>:presence:sockets:<user id>``), so one client cannot grow the sets.

Redis out of reach: presence is *unknown*, never "nobody". The reads then fall back to the chosen
status alone (unknown → assume online), so skip-the-wait does not turn every visitor away and
round robin still has someone to offer to (an offer nobody takes returns to everyone); the console
list says the live status is unavailable. Never a 500.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass

import redis
from django.conf import settings
from django.db.models import Count

from chatbots.models import Membership
from pivra.redis_client import shared_redis

logger = logging.getLogger(__name__)

# An open socket's lease lasts this long past its last refresh, and is refreshed this often: two
# refreshes may be lost (a busy event loop, a Redis blip) before a live socket counts as gone.
LEASE_SECONDS = 30.0
REFRESH_SECONDS = 10.0

ONLINE = Membership.Availability.ONLINE
AWAY = Membership.Availability.AWAY
OFFLINE = Membership.Availability.OFFLINE

# Console sockets one user may hold at once (every tab of every browser). Past it a new socket is
# closed with a code the page explains (pivra.console.consumers.CLOSE_TOO_MANY_SOCKETS).
MAX_SOCKETS_PER_USER = 20

# The user's latest lease end (the top of their set) into the workspace set; {mode} "'XX', " when only
# an existing entry may move.
_USER_SCORE = """
local top = redis.call('ZRANGE', KEYS[1], -1, -1, 'WITHSCORES')
if #top == 2 then redis.call('ZADD', KEYS[2], {mode}top[2], ARGV[2]) end
"""

# KEYS: the user's lease set in the workspace, the workspace's user set, the set of workspaces.
# ARGV: socket id, user id, lease end, cutoff, key ttl, workspace id.
# 1 when the user had no live lease before (arrived): their own set alone says so.
_TOUCH = (
    """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[4])
local arrived = 0
if redis.call('ZCARD', KEYS[1]) == 0 then arrived = 1 end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
"""
    + _USER_SCORE.format(mode="")
    + """
redis.call('EXPIRE', KEYS[2], ARGV[5])
redis.call('SADD', KEYS[3], ARGV[6])
return arrived
"""
)

# KEYS: the user's lease set, the workspace's user set. ARGV: socket id, user id, now, key ttl.
# Only an existing lease moves (XX), and only a user still listed: one the sweep dropped stays gone.
_RELEASE = """
redis.call('ZADD', KEYS[1], 'XX', ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[4])
""" + _USER_SCORE.format(mode="'XX', ")

# KEYS: the workspace's user set, the set of workspaces. ARGV: cutoff, workspace id.
# Drops the users whose latest lease is dead and returns them (departed).
_SWEEP = """
local gone = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1])
if #gone > 0 then redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[1]) end
if redis.call('ZCARD', KEYS[1]) == 0 then redis.call('SREM', KEYS[2], ARGV[2]) end
return gone
"""

# KEYS: the user's socket set. ARGV: socket id, now, lease end, cap, key ttl.
# 1 when the socket may stay (already admitted, or under the cap); a closed socket is removed at
# once, a killed one stops counting when its lease runs out.
_ADMIT = """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', ARGV[2])
if not redis.call('ZSCORE', KEYS[1], ARGV[1]) and redis.call('ZCARD', KEYS[1]) >= tonumber(ARGV[4]) then
  return 0
end
redis.call('ZADD', KEYS[1], ARGV[3], ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[5])
return 1
"""


def _grace() -> float:
    return float(settings.PRESENCE_GRACE_SECONDS)


def _key(workspace_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:presence:{workspace_id}"


def _user_key(workspace_id: int, user_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:presence:{workspace_id}:{user_id}"


def _workspaces_key() -> str:
    return f"{settings.CHANNEL_PREFIX}:presence:workspaces"


def _sockets_key(user_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:presence:sockets:{user_id}"


def _ttl() -> int:
    return int(LEASE_SECONDS + _grace()) + 60


# --- leases (called by the console socket, on its own thread: they block on Redis) -----------------


def presence_admit(*, user_id: int, socket_id: str, now: float | None = None) -> bool:
    """Count one console socket of the user (at connect, and again at each refresh); False when they
    already hold ``MAX_SOCKETS_PER_USER`` others. Raises ``redis.RedisError`` when Redis is out of reach."""
    now = time.time() if now is None else now
    admitted = shared_redis().eval(
        _ADMIT, 1, _sockets_key(user_id), socket_id, repr(now), repr(now + LEASE_SECONDS), MAX_SOCKETS_PER_USER, _ttl()
    )
    return bool(admitted)


def presence_dismiss(*, user_id: int, socket_id: str) -> None:
    """The socket closed: it no longer counts against the user's cap (its leases keep their grace)."""
    shared_redis().zrem(_sockets_key(user_id), socket_id)


def presence_touch(*, workspace_id: int, user_id: int, socket_id: str, now: float | None = None) -> bool:
    """Open or refresh one socket's lease. True when the user was not present before (they arrived:
    announce it). Raises ``redis.RedisError`` when Redis is out of reach."""
    now = time.time() if now is None else now
    arrived = shared_redis().eval(
        _TOUCH,
        3,
        _user_key(workspace_id, user_id),
        _key(workspace_id),
        _workspaces_key(),
        socket_id,
        user_id,
        repr(now + LEASE_SECONDS),
        repr(now - _grace()),
        _ttl(),
        workspace_id,
    )
    return bool(arrived)


def presence_release(*, workspace_id: int, user_id: int, socket_id: str, now: float | None = None) -> None:
    """The socket closed: its lease now ends after the grace period (a reload reconnects well within it).
    Only an existing lease is moved (XX): one the sweep already dropped stays gone."""
    now = time.time() if now is None else now
    shared_redis().eval(
        _RELEASE, 2, _user_key(workspace_id, user_id), _key(workspace_id), socket_id, user_id, repr(now), _ttl()
    )


def presence_sweep_workspace(*, workspace_id: int, now: float | None = None) -> set[int]:
    """Drop the workspace's users whose every lease is dead; their ids (they went Offline)."""
    now = time.time() if now is None else now
    gone = shared_redis().eval(_SWEEP, 2, _key(workspace_id), _workspaces_key(), repr(now - _grace()), workspace_id)
    return {int(uid) for uid in gone}


def presence_workspaces() -> set[int]:
    """Workspaces that have (or recently had) a console socket open."""
    return {int(w) for w in shared_redis().smembers(_workspaces_key())}


def present_user_ids(*, workspace_id: int, now: float | None = None) -> set[int]:
    """Users with a live lease in the workspace (an open socket, or one closed within the grace).
    Raises ``redis.RedisError`` when Redis is out of reach: callers decide what unknown means."""
    now = time.time() if now is None else now
    members = shared_redis().zrangebyscore(_key(workspace_id), f"({now - _grace()!r}", "+inf")
    return {_user_of(m) for m in members}


def _user_of(member: object) -> int:
    return int(member.decode() if isinstance(member, bytes) else str(member))


# --- reads (the contract other modules use) ----------------------------------------------------------


def _chosen_online_ids(workspace_id: int) -> set[int]:
    return set(
        Membership.objects.filter(workspace_id=workspace_id, availability=ONLINE, user__is_active=True).values_list(
            "user_id", flat=True
        )
    )


def online_agent_ids(*, workspace_id: int) -> set[int]:
    """User ids whose effective status is Online: chosen Online and a live console lease. Redis out of
    reach: every active member who chose Online (unknown → assume online, see the module)."""
    chosen = _chosen_online_ids(workspace_id)
    if not chosen:
        return chosen
    try:
        present = present_user_ids(workspace_id=workspace_id)
    except redis.RedisError:
        logger.warning("presence unknown (Redis out of reach): assuming members who chose Online are online")
        return chosen
    return chosen & present


def member_live_chat_counts(*, workspace_id: int) -> dict[int, int]:
    """Active (claimed) handoffs per claiming user in the workspace; users with none are absent."""
    from handoff.models import Handoff  # handoff imports chatbots, never the other way at import time

    rows = (
        Handoff.objects.filter(workspace_id=workspace_id, status=Handoff.Status.ACTIVE, claimed_by__isnull=False)
        .values("claimed_by_id")
        .annotate(n=Count("pk"))
    )
    return {int(row["claimed_by_id"]): int(row["n"]) for row in rows}


def _capacities(workspace_id: int, user_ids: set[int]) -> dict[int, int | None]:
    return dict(
        Membership.objects.filter(workspace_id=workspace_id, user_id__in=user_ids).values_list(
            "user_id", "max_live_chats"
        )
    )


def agents_with_capacity(*, workspace_id: int) -> list[int]:
    """Online agents under their ``max_live_chats`` (empty: unlimited), fewest live chats first, then
    by user id (a stable order for round robin to walk)."""
    online = online_agent_ids(workspace_id=workspace_id)
    if not online:
        return []
    counts = member_live_chat_counts(workspace_id=workspace_id)
    capacities = _capacities(workspace_id, online)
    free = [uid for uid in online if capacities.get(uid) is None or counts.get(uid, 0) < int(capacities[uid] or 0)]
    return sorted(free, key=lambda uid: (counts.get(uid, 0), uid))


def member_at_capacity(*, user_id: int, workspace_id: int) -> bool:
    """Whether the member already has ``max_live_chats`` live chats in the workspace (never when unlimited)."""
    from handoff.models import Handoff

    capacity = (
        Membership.objects.filter(workspace_id=workspace_id, user_id=user_id)
        .values_list("max_live_chats", flat=True)
        .first()
    )
    if capacity is None:
        return False
    live = Handoff.objects.filter(workspace_id=workspace_id, status=Handoff.Status.ACTIVE, claimed_by_id=user_id)
    return live.count() >= capacity


# --- the console's "Online now" list --------------------------------------------------------------------


@dataclass(frozen=True)
class MemberPresence:
    user_id: int
    membership_id: int
    role_label: str
    name: str
    chosen: str
    status: str  # effective: online, away or offline
    live_chats: int
    max_live_chats: int | None

    @property
    def status_label(self) -> str:
        return str(Membership.Availability(self.status).label)


@dataclass(frozen=True)
class Roster:
    members: list[MemberPresence]
    known: bool  # False: Redis was out of reach, the statuses are the chosen ones
    grace_seconds: int

    @property
    def online_count(self) -> int:
        return sum(1 for m in self.members if m.status == ONLINE)


def effective_status(*, chosen: str, present: bool) -> str:
    """Offline without a live socket whatever was chosen; otherwise what they chose."""
    return chosen if present else OFFLINE


_ORDER: dict[str, int] = {ONLINE: 0, AWAY: 1, OFFLINE: 2}


def workspace_roster(*, workspace_id: int) -> Roster:
    """Every member with their effective status and live chats: Online first, then Away, Offline (a
    deactivated user is Offline)."""
    memberships = list(Membership.objects.filter(workspace_id=workspace_id).select_related("user"))
    known = True
    try:
        present = present_user_ids(workspace_id=workspace_id)
    except redis.RedisError:
        known, present = False, {m.user_id for m in memberships}
    counts = member_live_chat_counts(workspace_id=workspace_id)
    members = [
        MemberPresence(
            user_id=m.user_id,
            membership_id=m.pk,
            role_label=str(m.get_role_display()),
            name=str(m.user.get_short_name() or m.user.get_username()),
            chosen=m.availability,
            status=effective_status(chosen=m.availability, present=m.user.is_active and m.user_id in present),
            live_chats=counts.get(m.user_id, 0),
            max_live_chats=m.max_live_chats,
        )
        for m in memberships
    ]
    members.sort(key=lambda m: (_ORDER.get(m.status, 3), m.name.lower()))
    return Roster(members=members, known=known, grace_seconds=int(_grace()))
