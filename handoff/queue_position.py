"""Where a waiting visitor stands, and how long a wait usually takes.

The line is a workspace's *pending* handoffs, oldest request first (``requested_at``, then id): a
released or requeued conversation keeps its place near the front, as the Handoff tab orders it.
Team busy handoffs are not in it (nobody makes that visitor wait any more), nor is a handoff
offered to a named colleague by a transfer (it waits for that colleague, not for the line). A
round-robin offer stays in the line: it is only how the line is served.

Only the first ``NUMBERED`` places are numbered: a visitor further back is told "50+ people are
ahead of you" (``position_over``) and gets no frame per queue change, so a huge line (a hostile
tenant, a flood of visitors) costs every query and announcement at most ``NUMBERED`` rows.

The expected wait is the workspace's median time from entering the line (``queued_at``: the
request, a requeue, a transfer nobody accepted) to a claim from it, over its recent claims (the
last ``RECENT_CLAIMS`` within ``RECENT_DAYS``), cached for a minute. Left out: late claims (after
Team busy since it was queued — a call-back, not a wait in line), and claims that were a
colleague accepting a transfer or a take-over (not a wait in line either). With fewer than
``MIN_CLAIMS`` there is too little history: None, which the widget says as "a few minutes".

Live updates: every queue change (``announce_state``) calls ``queue_positions_announce_on_commit``.
After commit a Redis marker coalesces the changes of a workspace into at most one announcement
task per second (``handoff.tasks.announce_queue_positions`` on the ``celery`` queue), which reads
the numbered part of the line once, compares it with the positions last sent (a Redis hash) and
sends a small ``position`` frame only to the visitors whose place or estimate changed.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import redis
from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Q
from django.utils import timezone

from handoff.models import Handoff
from pivra.realtime import send_frames_now, visitor_group
from pivra.redis_client import shared_redis

logger = logging.getLogger(__name__)

# How many places are numbered and announced. Past this a visitor's exact place matters little
# ("50+ people are ahead of you"), and bounding it bounds the cost of every queue change.
NUMBERED = 50
RECENT_CLAIMS = 50
RECENT_DAYS = 7
MIN_CLAIMS = 5
WAIT_CACHE_SECONDS = 60
POSITIONS_TTL_SECONDS = 86_400  # the hash of a workspace whose line stays still goes away
# At most one announcement per workspace per this window (the rest are coalesced into it).
COALESCE_MS = 1000
# A trailing announcement whose task was lost stops blocking the next one after this.
TRAILING_TTL_MS = 10_000
ANNOUNCE_TASK = "handoff.tasks.announce_queue_positions"
ANNOUNCE_QUEUE = "celery"  # quick, database and Redis only, bounded: beside the timers (README)

# A handoff waits for the line unless a transfer offered it to one colleague.
IN_LINE = Q(status=Handoff.Status.PENDING) & ~Q(offered_to__isnull=False, offer_kind="transfer")


def _in_line(handoff: Handoff) -> bool:
    return handoff.status == Handoff.Status.PENDING and not (handoff.offered_to_id and handoff.offer_kind == "transfer")


def queue_position(*, handoff: Handoff) -> int | None:
    """1 for the next in line; None when the handoff is not waiting in the line or is further back
    than ``NUMBERED`` (see ``queue_snapshot``). One count of at most ``NUMBERED`` index rows."""
    if not _in_line(handoff):
        return None
    ahead = (
        Handoff.objects.filter(workspace_id=handoff.workspace_id)
        .filter(IN_LINE)
        .filter(Q(requested_at__lt=handoff.requested_at) | Q(requested_at=handoff.requested_at, pk__lt=handoff.pk))
        .order_by()[:NUMBERED]
        .count()
    )
    return ahead + 1 if ahead < NUMBERED else None


# A claim counts when it was made from the line: not late (Team busy since it was queued), not a
# colleague accepting a transfer, not a take-over (both leave an event after queued_at).
_MEDIAN_SQL = """
SELECT percentile_cont(0.5) WITHIN GROUP (ORDER BY waited), count(*)
FROM (
  SELECT EXTRACT(EPOCH FROM (h.claimed_at - h.queued_at)) AS waited
  FROM handoff_handoff h
  WHERE h.workspace_id = %s AND h.claimed_at >= %s
    AND (h.timed_out_at IS NULL OR h.timed_out_at < h.queued_at)
    AND NOT EXISTS (
      SELECT 1 FROM conversations_event e
      WHERE e.conversation_id = h.conversation_id
        AND e.kind IN ('handoff.transferred', 'handoff.taken_over')
        AND e.created_at >= h.queued_at
    )
  ORDER BY h.claimed_at DESC
  LIMIT %s
) recent
"""


def median_wait_seconds(*, workspace_id: int) -> int | None:
    """The uncached median wait in line (seconds) of the workspace's recent claims, or None. Reads
    the claims newest first by the ``handoff_workspace_claimed`` index."""
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
    """The median wait, cached for a minute (every announcement and snapshot reads it).
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
    """The ``position``, ``position_over`` and ``wait_seconds`` fields of a widget state: a place
    within the first ``NUMBERED``, else ``position_over`` = ``NUMBERED`` (all None outside the line)."""
    if not _in_line(handoff):
        return {"position": None, "position_over": None, "wait_seconds": None}
    position = queue_position(handoff=handoff)
    return {
        "position": position,
        "position_over": NUMBERED if position is None else None,
        "wait_seconds": expected_wait_seconds(workspace_id=handoff.workspace_id),
    }


# The place of each given handoff, counting at most NUMBERED rows ahead of each (the
# handoff_line index): the console page's rows, never the whole line.
_PLACES_SQL = """
SELECT h.id, (
  SELECT count(*) FROM (
    SELECT 1 FROM handoff_handoff x
    WHERE x.workspace_id = h.workspace_id AND x.status = 'pending'
      AND NOT (x.offered_to_id IS NOT NULL AND x.offer_kind = 'transfer')
      AND (x.requested_at, x.id) < (h.requested_at, h.id)
    LIMIT %s
  ) ahead
)
FROM handoff_handoff h
WHERE h.id = ANY(%s) AND h.workspace_id = %s AND h.status = 'pending'
  AND NOT (h.offered_to_id IS NOT NULL AND h.offer_kind = 'transfer')
"""


def queue_places(*, workspace_id: int, handoff_ids: list[int]) -> dict[int, int | None]:
    """Handoff id → position for the given handoffs in line (the Handoff tab's page), None for one
    further back than ``NUMBERED``; handoffs not in line are left out. One query."""
    if not handoff_ids:
        return {}
    with connection.cursor() as cursor:
        cursor.execute(_PLACES_SQL, [NUMBERED, list(handoff_ids), workspace_id])
        return {pk: (ahead + 1 if ahead < NUMBERED else None) for pk, ahead in cursor.fetchall()}


_LINE_SQL = """
SELECT h.id, c.public_id, v.public_id,
       row_number() OVER (ORDER BY h.requested_at, h.id)
FROM handoff_handoff h
JOIN conversations_conversation c ON c.id = h.conversation_id
JOIN conversations_visitor v ON v.id = c.visitor_id
WHERE h.workspace_id = %s AND h.status = 'pending'
  AND NOT (h.offered_to_id IS NOT NULL AND h.offer_kind = 'transfer')
ORDER BY h.requested_at, h.id
LIMIT %s
"""

_NOW_SQL = "SELECT EXTRACT(EPOCH FROM clock_timestamp()) * 1000000"

# The numbered handoffs among the given ids that are still in line (pushed back past NUMBERED by
# a conversation returning near the front): they hear that they are now further back.
_PUSHED_BACK_SQL = """
SELECT h.id, c.public_id, v.public_id
FROM handoff_handoff h
JOIN conversations_conversation c ON c.id = h.conversation_id
JOIN conversations_visitor v ON v.id = c.visitor_id
WHERE h.id = ANY(%s) AND h.status = 'pending'
  AND NOT (h.offered_to_id IS NOT NULL AND h.offer_kind = 'transfer')
"""


# Compares the numbered line just read with the positions last sent (a hash: handoff id →
# "position:wait"), stores the new ones and answers {changed ids, ids no longer numbered}. A read
# older than the last one applied (two announcements at once) changes nothing and sends nothing.
_DIFF = """
local last = redis.call('HGET', KEYS[1], '_at')
if last and tonumber(last) > tonumber(ARGV[1]) then return {{}, {}} end
local seen = {}
for i = 3, #ARGV, 2 do seen[ARGV[i]] = true end
local old = redis.call('HGETALL', KEYS[1])
local removed = {}
for i = 1, #old, 2 do
  if old[i] ~= '_at' and not seen[old[i]] then
    redis.call('HDEL', KEYS[1], old[i])
    removed[#removed + 1] = old[i]
  end
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
return {changed, removed}
"""


def _positions_key(workspace_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:queue-positions:{workspace_id}"


def _frame(conversation: Any, position: int | None, wait: int | None) -> dict[str, Any]:
    return {
        "type": "position",
        "conversation": str(conversation),
        "position": position,
        "position_over": NUMBERED if position is None else None,
        "wait_seconds": wait,
    }


def queue_positions_announce(*, workspace_id: int) -> int:
    """Send a ``position`` frame to every numbered visitor of the workspace whose place or estimate
    changed since the last announcement (and a "further back" one to any pushed past the numbered
    places); returns how many frames went out. The announcement task runs it: one query of at most
    ``NUMBERED`` rows, one Redis call for the comparison, one publish round."""
    with connection.cursor() as cursor:
        cursor.execute(_LINE_SQL, [workspace_id, NUMBERED])
        rows = cursor.fetchall()
        cursor.execute(_NOW_SQL)  # the database clock orders readings from different processes
        stamp = int(cursor.fetchone()[0])
    wait = expected_wait_seconds(workspace_id=workspace_id) if rows else None
    args: list[Any] = [stamp, POSITIONS_TTL_SECONDS]
    for handoff_id, _conv, _visitor, position in rows:
        args += [handoff_id, f"{position}:{'' if wait is None else wait}"]
    key = _positions_key(workspace_id)
    try:
        changed_raw, removed_raw = shared_redis().eval(_DIFF, 1, key, *args)
    except redis.RedisError:
        # The channel layer lives on the same Redis: nothing could be published now anyway. The
        # next queue change or the widget's next state snapshot brings the position back.
        logger.warning("could not compare the queue positions of workspace %s", workspace_id, exc_info=True)
        return 0
    changed = {int(raw) for raw in changed_raw}
    frames = [
        (visitor_group(visitor), _frame(conv, position, wait))
        for handoff_id, conv, visitor, position in rows
        if handoff_id in changed
    ]
    removed = [int(raw) for raw in removed_raw]
    if removed and len(rows) == NUMBERED:  # only a full numbered line can push anyone past it
        with connection.cursor() as cursor:
            cursor.execute(_PUSHED_BACK_SQL, [removed])
            frames += [(visitor_group(visitor), _frame(conv, None, wait)) for _id, conv, visitor in cursor.fetchall()]
    if frames and not send_frames_now(frames):
        # Not everyone heard it: forget what was "sent", so the next announcement sends it again
        # instead of finding nothing changed and leaving those visitors stale.
        try:
            shared_redis().delete(key)
        except redis.RedisError:
            logger.warning("could not clear the queue positions of workspace %s", workspace_id, exc_info=True)
        return 0
    return len(frames)


def _lead_key(workspace_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:queue-announce:{workspace_id}"


def _trail_key(workspace_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:queue-announce-next:{workspace_id}"


def queue_positions_schedule(*, workspace_id: int) -> None:
    """Coalesce a queue change into at most one announcement per ``COALESCE_MS``: the first change
    of a window enqueues one now; the later ones share one trailing announcement at the window's
    end (it re-reads the line, so it covers them all). Enqueued by name: no import cycle."""
    r = shared_redis()
    if r.set(_lead_key(workspace_id), 1, nx=True, px=COALESCE_MS):
        _enqueue(workspace_id, trailing=False, countdown=0.0)
    elif r.set(_trail_key(workspace_id), 1, nx=True, px=TRAILING_TTL_MS):
        remaining = int(r.pttl(_lead_key(workspace_id)))  # -2 when it has just expired: run now
        _enqueue(workspace_id, trailing=True, countdown=max(0, remaining) / 1000)


def _enqueue(workspace_id: int, *, trailing: bool, countdown: float) -> None:
    current_app.send_task(ANNOUNCE_TASK, args=[workspace_id, trailing], queue=ANNOUNCE_QUEUE, countdown=countdown)


def queue_positions_announce_task(*, workspace_id: int, trailing: bool) -> int:
    """The announcement task's body. A trailing one frees its slot before reading the line (a change
    committed after that schedules another) and starts a new window, so runs stay a window apart."""
    if trailing:
        r = shared_redis()
        r.delete(_trail_key(workspace_id))
        r.set(_lead_key(workspace_id), 1, px=COALESCE_MS)
    return queue_positions_announce(workspace_id=workspace_id)


def _schedule_quietly(workspace_id: int) -> None:
    try:
        queue_positions_schedule(workspace_id=workspace_id)
    except Exception:  # Redis or the broker away: the next change or the next snapshot catches up
        logger.warning("could not schedule the queue positions of workspace %s", workspace_id, exc_info=True)


def queue_positions_announce_on_commit(*, workspace_id: int) -> None:
    """Once the transaction commits: schedule the position frames of the workspace's line (a quick
    Redis call here; the announcement itself runs in a Celery task, never on this thread)."""
    transaction.on_commit(lambda: _schedule_quietly(workspace_id))
