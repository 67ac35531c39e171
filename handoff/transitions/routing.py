"""Round robin (``Chatbot.handoff_routing == "round_robin"``): a new handoff is offered to one agent at a
time instead of to everyone.

The agent is the online one under capacity (``chatbots.presence.agents_with_capacity``) with the
fewest live chats — an open round-robin offer counts as one, so two visitors arriving together go to
two agents — ties going to whoever was offered or claimed a chat least recently, then the lowest id.
The offer (``offers.handoff_offer_to_agent``, kind ``route``) runs ``PIVRA_ROUTING_OFFER_SECONDS``; while it
runs only that agent may claim. When it expires or is declined, ``offers.handoff_offer_end`` calls
``handoff_route`` again: the next agent not yet tried (``Handoff.routing_tried``), and when none is
left the handoff simply stays pending with no offer — everyone may claim it, first claim wins.

Off by default. A request that skips the wait (nobody online, after hours) is Team busy at once, so
there is nothing to route. Released or requeued handoffs are not routed again: they go to everyone.
"""

from __future__ import annotations

import logging
from datetime import datetime

import redis
from django.conf import settings
from django.contrib.auth.models import User
from django.db import transaction
from django.db.models import Count, Max
from django.utils import timezone

from chatbots.models import Chatbot, Membership
from chatbots.presence import agents_with_capacity, member_live_chat_counts
from handoff.models import Handoff
from handoff.transitions.offers import KIND_ROUTE, handoff_offer_to_agent
from pivra.redis_client import shared_redis

logger = logging.getLogger(__name__)

LAST_OFFERED_TTL_SECONDS = 7 * 86_400


def handoff_route(*, handoff: Handoff, now: datetime) -> None:
    """Offer a pending, unoffered handoff to the next round-robin agent, or leave it to everyone.
    Runs in the caller's transaction (which may already hold the handoff row) or its own."""
    with transaction.atomic():
        locked = (
            Handoff.objects.select_for_update(of=("self",))
            .select_related("chatbot", "conversation")
            .filter(pk=handoff.pk)
            .first()
        )
        if locked is None or locked.status != Handoff.Status.PENDING:
            return
        if locked.chatbot.handoff_routing != Chatbot.Routing.ROUND_ROBIN:
            return
        if locked.offered_to_id is not None and locked.offer_expires_at is not None and locked.offer_expires_at > now:
            return  # an offer (a transfer, or this round's) is running
        tried = [int(uid) for uid in locked.routing_tried or []]
        agent_id = routing_next_agent(workspace_id=locked.workspace_id, exclude=set(tried), now=now)
        if agent_id is None:
            return  # nobody left to try: the handoff is everyone's, first claim wins
        agent = User.objects.get(pk=agent_id)
        locked.routing_tried = [*tried, agent_id]
        Handoff.objects.filter(pk=locked.pk).update(routing_tried=locked.routing_tried)
        handoff_offer_to_agent(
            handoff=locked, to=agent, kind=KIND_ROUTE, by=None, seconds=settings.ROUTING_OFFER_SECONDS
        )
        workspace_id = locked.workspace_id
        transaction.on_commit(
            lambda: _note_offered(workspace_id=workspace_id, user_id=agent_id, at=now.timestamp()), robust=True
        )
    handoff.routing_tried = locked.routing_tried
    handoff.offered_to_id, handoff.offer_kind = locked.offered_to_id, locked.offer_kind
    handoff.offer_expires_at = locked.offer_expires_at


def routing_next_agent(*, workspace_id: int, exclude: set[int], now: datetime) -> int | None:
    """The agent round robin offers to next, or None. Online and under capacity (an open offer counts
    as a chat), fewest chats first, then the least recently offered or claimed, then the lowest id."""
    candidates = [uid for uid in agents_with_capacity(workspace_id=workspace_id) if uid not in exclude]
    if not candidates:
        return None
    live = member_live_chat_counts(workspace_id=workspace_id)
    offers = dict(
        Handoff.objects.filter(
            workspace_id=workspace_id,
            status=Handoff.Status.PENDING,
            offered_to_id__in=candidates,
            offer_kind=KIND_ROUTE,
            offer_expires_at__gt=now,
        )
        .values("offered_to_id")
        .annotate(n=Count("pk"))
        .values_list("offered_to_id", "n")
    )
    capacity = dict(
        Membership.objects.filter(workspace_id=workspace_id, user_id__in=candidates).values_list(
            "user_id", "max_live_chats"
        )
    )
    load = {uid: live.get(uid, 0) + offers.get(uid, 0) for uid in candidates}
    free = [uid for uid in candidates if capacity.get(uid) is None or load[uid] < int(capacity[uid] or 0)]
    if not free:
        return None
    recent = _last_activity(workspace_id=workspace_id, user_ids=free)
    return min(free, key=lambda uid: (load[uid], recent.get(uid, 0.0), uid))


def _last_activity(*, workspace_id: int, user_ids: list[int]) -> dict[int, float]:
    """When each agent was last offered (Redis) or last claimed a chat (the database), as a timestamp."""
    claimed = (
        Handoff.objects.filter(workspace_id=workspace_id, claimed_by_id__in=user_ids)
        .values("claimed_by_id")
        .annotate(at=Max("claimed_at"))
        .values_list("claimed_by_id", "at")
    )
    latest = {uid: at.timestamp() for uid, at in claimed if at is not None}
    try:
        scores = shared_redis().zmscore(_offered_key(workspace_id), [str(uid) for uid in user_ids])
    except redis.RedisError:
        scores = [None] * len(user_ids)  # fairness degrades to "least recently claimed" for a while
    for uid, score in zip(user_ids, scores, strict=True):
        if score is not None:
            latest[uid] = max(latest.get(uid, 0.0), float(score))
    return latest


def _offered_key(workspace_id: int) -> str:
    return f"{settings.CHANNEL_PREFIX}:routing-offered:{workspace_id}"


def _note_offered(*, workspace_id: int, user_id: int, at: float) -> None:
    try:
        client = shared_redis()
        client.zadd(_offered_key(workspace_id), {str(user_id): at})
        client.expire(_offered_key(workspace_id), LAST_OFFERED_TTL_SECONDS)
    except redis.RedisError:
        logger.warning("could not note the round-robin offer to user %s", user_id, exc_info=True)


def route_on_commit(*, handoff: Handoff) -> None:
    """From the request path: once the request commits, offer the new handoff by round robin (only
    when the chatbot routes so). Robust: the request is committed whatever happens here."""
    if handoff.chatbot.handoff_routing != Chatbot.Routing.ROUND_ROBIN:
        return
    handoff_id = handoff.pk

    def route() -> None:
        fresh = Handoff.objects.filter(pk=handoff_id).first()
        if fresh is not None:
            handoff_route(handoff=fresh, now=timezone.now())

    transaction.on_commit(route, robust=True)
