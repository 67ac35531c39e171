"""Where a waiting visitor stands, and how long a wait usually takes.

The line is a workspace's *pending* handoffs, oldest request first (``requested_at``, then id).
Team busy handoffs are not in it (nobody makes that visitor wait any more), nor is a handoff
offered to a named colleague by a transfer (it waits for that colleague, not for the line). A
round-robin offer stays in the line: it is only how the line is served.

The expected wait is the workspace's median time to claim over its recent claims (the last
``RECENT_CLAIMS`` within ``RECENT_DAYS``), cached for a minute because every queue change reads
it. Late claims (after Team busy) are left out: they measure how long a lead waited for a
call-back, not a wait in line. With fewer than ``MIN_CLAIMS`` there is too little history: None,
which the widget says as "a few minutes".

Live updates: every queue change (``announce_state``) calls ``queue_positions_announce_on_commit``.
After commit one query numbers the whole line, and a Redis hash of the positions last sent picks
the visitors whose position or estimate changed; only they get a small ``position`` frame.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import redis
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from handoff.models import Handoff
from pivra.realtime import send_frames_now, visitor_group
from pivra.redis_client import shared_redis

logger = logging.getLogger(__name__)

RECENT_CLAIMS = 50
RECENT_DAYS = 7
MIN_CLAIMS = 5
WAIT_CACHE_SECONDS = 60
POSITIONS_TTL_SECONDS = 86_400  # the hash of a workspace whose line stays still goes away

# A handoff waits for the line unless a transfer offered it to one colleague.
IN_LINE = Q(status=Handoff.Status.PENDING) & ~Q(offered_to__isnull=False, offer_kind="transfer")


def queue_position(*, handoff: Handoff) -> int | None:
    """1 for the next in line; None when the handoff is not waiting in the line. One indexed count
    (handoff_workspace_status)."""
    if handoff.status != Handoff.Status.PENDING or (handoff.offered_to_id and handoff.offer_kind == "transfer"):
        return None
    ahead = (
        Handoff.objects.filter(workspace_id=handoff.workspace_id)
        .filter(IN_LINE)
        .filter(Q(requested_at__lt=handoff.requested_at) | Q(requested_at=handoff.requested_at, pk__lt=handoff.pk))
        .count()
    )
    return ahead + 1


_MEDIAN_SQL = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY waited), count(*)
FROM (
  SELECT EXTRACT(EPOCH FROM (claimed_at - requested_at)) AS waited
  FROM handoff_handoff
  WHERE workspace_id = %s AND claimed_at >= %s AND timed_out_at IS NULL
  ORDER BY claimed_at DESC
  LIMIT %s
) recent
"""


def median_wait_seconds(*, workspace_id: int) -> int | None:
    """The uncached median time to claim (seconds) of the workspace's recent claims, or None."""
    since = timezone.now() - timedelta(days=RECENT_DAYS)
    with connection.cursor() as cursor:
        cursor.execute(_MEDIAN_SQL, [workspace_id, since, RECENT_CLAIMS])
        median, count = cursor.fetchone()
    if count < MIN_CLAIMS or median is None:
        return None
    return max(0, round(float(median)))


def _wait_key(workspace_id: int) -> str:
    return f"queue-wait:{workspace_id}"


def expected_wait_seconds(*, workspace_id: int) -> int | None:
    """The median time to claim, cached for a minute (every queue change and snapshot reads it).
    None means too little history ("a few minutes")."""
    key = _wait_key(workspace_id)
    try:
        cached = cache.get(key)
    except redis.RedisError:
        cached = None  # Redis away: compute it; the query is cheap enough once
    if cached is not None:
        return None if cached < 0 else int(cached)
    value = median_wait_seconds(workspace_id=workspace_id)
    try:
        cache.set(key, -1 if value is None else value, WAIT_CACHE_SECONDS)
    except redis.RedisError:
        pass
    return value


def queue_snapshot(*, handoff: Handoff) -> dict[str, Any]:
    """The ``position`` and ``wait_seconds`` fields of a widget state (both None unless in line)."""
    position = queue_position(handoff=handoff)
    if position is None:
        return {"position": None, "wait_seconds": None}
    return {"position": position, "wait_seconds": expected_wait_seconds(workspace_id=handoff.workspace_id)}


_LINE_SQL = """
SELECT h.id, c.public_id, v.public_id,
       row_number() OVER (ORDER BY h.requested_at, h.id),
       EXTRACT(EPOCH FROM clock_timestamp()) * 1000000
FROM handoff_handoff h
JOIN conversations_conversation c ON c.id = h.conversation_id
JOIN conversations_visitor v ON v.id = c.visitor_id
WHERE h.workspace_id = %s AND h.status = 'pending'
  AND NOT (h.offered_to_id IS NOT NULL AND h.offer_kind = 'transfer')
ORDER BY h.requested_at, h.id
"""


def workspace_queue_positions(*, workspace_id: int) -> dict[int, int]:
    """Handoff id → position for the whole line of a workspace (the console's Handoff tab)."""
    with connection.cursor() as cursor:
        cursor.execute(_LINE_SQL, [workspace_id])
        return {row[0]: row[3] for row in cursor.fetchall()}


# Compares the line just read with the positions last sent (a hash: handoff id → "position:wait"),
# stores the new ones and answers the ids that changed. A read older than the last one applied
# (two queue changes published by two processes at once) changes nothing and sends nothing.
_DIFF = """
local last = redis.call('HGET', KEYS[1], '_at')
if last and tonumber(last) > tonumber(ARGV[1]) then return {} end
local seen = {}
for i = 3, #ARGV, 2 do seen[ARGV[i]] = true end
local old = redis.call('HGETALL', KEYS[1])
for i = 1, #old, 2 do
  if old[i] ~= '_at' and not seen[old[i]] then redis.call('HDEL', KEYS[1], old[i]) end
end
local changed = {}
for i = 3, #ARGV, 2 do
  if redis.call('HGET', KEYS[1], ARGV[i]) ~= ARGV[i + 1] then
    redis.call('HSET', KEYS[1], ARGV[i], ARGV[i + 1])
    changed[#changed + 1] = ARGV[i]
  end
end
redis.call('HSET', KEYS[1], '_at', ARGV[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return changed
"""


def _positions_key(workspace_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:queue-positions:{workspace_id}"


def queue_positions_announce(*, workspace_id: int) -> int:
    """Send a ``position`` frame to every waiting visitor of the workspace whose position or
    estimate changed since the last announcement; returns how many frames went out. Call after
    commit: one query for the line, one Redis call for the comparison, one publish round."""
    with connection.cursor() as cursor:
        cursor.execute(_LINE_SQL, [workspace_id])
        rows = cursor.fetchall()
        if rows:
            stamp = int(rows[0][4])
        else:  # an empty line still clears the hash, stamped by the same (database) clock
            cursor.execute("SELECT EXTRACT(EPOCH FROM clock_timestamp()) * 1000000")
            stamp = int(cursor.fetchone()[0])
    wait = expected_wait_seconds(workspace_id=workspace_id) if rows else None
    args: list[Any] = [stamp, POSITIONS_TTL_SECONDS]
    for handoff_id, _conv, _visitor, position, _at in rows:
        args += [handoff_id, f"{position}:{'' if wait is None else wait}"]
    try:
        changed = {int(raw) for raw in shared_redis().eval(_DIFF, 1, _positions_key(workspace_id), *args)}
    except redis.RedisError:
        # The channel layer lives on the same Redis: nothing could be published now anyway. The
        # next queue change or the widget's next state snapshot brings the position back.
        logger.warning("could not compare the queue positions of workspace %s", workspace_id, exc_info=True)
        return 0
    frames = [
        (
            visitor_group(visitor),
            {"type": "position", "conversation": str(conv), "position": position, "wait_seconds": wait},
        )
        for handoff_id, conv, visitor, position, _at in rows
        if handoff_id in changed
    ]
    if frames:
        send_frames_now(frames)
    return len(frames)


def queue_positions_announce_on_commit(*, workspace_id: int) -> None:
    """Once the transaction commits: the position frames of the workspace's line (robust: a failure
    here must not undo or fail the committed transition)."""
    transaction.on_commit(lambda: queue_positions_announce(workspace_id=workspace_id), robust=True)
