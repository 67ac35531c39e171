"""Queue position and expected wait: the line's order, the median time to claim, the widget's
snapshot, the Handoff tab, and the live position frames a claim sends to the visitors still waiting."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from chatbots.models import Chatbot
from handoff.models import Handoff
from handoff.queue_position import (
    MIN_CLAIMS,
    expected_wait_seconds,
    median_wait_seconds,
    queue_position,
    workspace_queue_positions,
)
from handoff.state import conversation_state
from handoff.transitions.claim import handoff_claim
from handoff.transitions.resolve import handoff_resolve
from pivra.realtime import visitor_group
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request


@pytest.fixture
def bot(personas: Personas) -> Chatbot:
    """Handoff on; requests wait in line even with nobody online (the skip-the-wait path is item 2's)."""
    bot = enable_handoff(personas.chatbot)
    Chatbot.objects.filter(pk=bot.pk).update(handoff_skip_wait_when_offline=False)
    bot.refresh_from_db()
    return bot


def _waiting(bot: Chatbot, count: int, *, start: Any = None) -> list[tuple[Any, Any, Handoff]]:
    start = start or timezone.now() - timedelta(minutes=10)
    out = []
    for n in range(count):
        visitor, conversation = new_visitor(bot)
        out.append((visitor, conversation, request(visitor, conversation, now=start + timedelta(seconds=n))))
    return out


def _claims(bot: Chatbot, personas: Personas, waits: list[int], **extra: Any) -> None:
    """Handoffs claimed ``waits`` seconds after their request, an hour ago."""
    at = timezone.now() - timedelta(hours=1)
    for _, _, handoff in _waiting(bot, len(waits), start=at):
        Handoff.objects.filter(pk=handoff.pk).update(
            status=Handoff.Status.ACTIVE,
            claimed_by=personas.owner,
            claimed_at=handoff.requested_at + timedelta(seconds=waits.pop(0)),
            **extra,
        )


@pytest.mark.django_db
def test_the_line_is_pending_handoffs_oldest_first_without_busy_or_transferred_ones(bot, personas) -> None:
    rows = _waiting(bot, 4)
    handoffs = [h for _, _, h in rows]
    assert [queue_position(handoff=h) for h in handoffs] == [1, 2, 3, 4]
    # Team busy is not in line, nor a handoff offered to a named colleague by a transfer.
    Handoff.objects.filter(pk=handoffs[0].pk).update(status=Handoff.Status.BUSY, timed_out_at=timezone.now())
    Handoff.objects.filter(pk=handoffs[2].pk).update(offered_to=personas.teammate, offer_kind="transfer")
    fresh = [Handoff.objects.get(pk=h.pk) for h in handoffs]
    assert [queue_position(handoff=h) for h in fresh] == [None, 1, None, 2]
    # A round-robin offer is only how the line is served: it stays in it.
    Handoff.objects.filter(pk=handoffs[2].pk).update(offer_kind="route")
    fresh = [Handoff.objects.get(pk=h.pk) for h in handoffs]
    assert [queue_position(handoff=h) for h in fresh] == [None, 1, 2, 3]
    assert workspace_queue_positions(workspace_id=bot.workspace_id) == {
        handoffs[1].pk: 1,
        handoffs[2].pk: 2,
        handoffs[3].pk: 3,
    }


@pytest.mark.django_db
def test_requests_at_the_same_instant_are_ordered_by_id_and_workspaces_do_not_mix(bot, personas) -> None:
    at = timezone.now()
    first, second = (request(*new_visitor(bot), now=at) for _ in range(2))
    other = personas.other_chatbot
    enable_handoff(other)
    foreign = request(*new_visitor(other), now=at - timedelta(minutes=5))
    assert queue_position(handoff=first) == 1 and queue_position(handoff=second) == 2
    assert queue_position(handoff=foreign) == 1


@pytest.mark.django_db
def test_too_little_history_says_a_few_minutes(bot, personas) -> None:
    _claims(bot, personas, [30] * (MIN_CLAIMS - 1))
    assert median_wait_seconds(workspace_id=bot.workspace_id) is None


@pytest.mark.django_db
def test_the_estimate_is_the_median_of_recent_claims_without_late_or_old_ones(bot, personas) -> None:
    _claims(bot, personas, [10, 20, 30, 40, 50, 1000])
    assert median_wait_seconds(workspace_id=bot.workspace_id) == 35  # percentile_cont interpolates (30 + 40) / 2
    # A late claim (after Team busy) and a claim older than a week do not count.
    _claims(bot, personas, [5000, 6000, 7000], timed_out_at=timezone.now() - timedelta(hours=2))
    old = timezone.now() - timedelta(days=8)
    for _, _, handoff in _waiting(bot, 3, start=old):
        Handoff.objects.filter(pk=handoff.pk).update(
            status=Handoff.Status.RESOLVED, claimed_at=old + timedelta(seconds=9000)
        )
    assert median_wait_seconds(workspace_id=bot.workspace_id) == 35


@pytest.mark.django_db
def test_the_estimate_is_cached_for_a_minute(bot, personas, django_assert_num_queries) -> None:
    cache.delete(f"queue-wait:{bot.workspace_id}")
    assert expected_wait_seconds(workspace_id=bot.workspace_id) is None
    _claims(bot, personas, [60] * MIN_CLAIMS)
    with django_assert_num_queries(0):
        assert expected_wait_seconds(workspace_id=bot.workspace_id) is None  # cached "too little"
    cache.delete(f"queue-wait:{bot.workspace_id}")
    assert expected_wait_seconds(workspace_id=bot.workspace_id) == 60


@pytest.mark.django_db
def test_the_widget_snapshot_carries_position_and_estimate(bot, personas) -> None:
    _claims(bot, personas, [90] * MIN_CLAIMS)
    rows = _waiting(bot, 3)
    cache.delete(f"queue-wait:{bot.workspace_id}")  # the requests above cached "too little history"
    state = conversation_state(rows[2][1])
    assert state["handoff"]["position"] == 3 and state["handoff"]["wait_seconds"] == 90
    handoff_claim(agent=personas.owner, conversation_public_id=str(rows[2][1].public_id))
    state = conversation_state(rows[2][1])
    assert state["handoff"]["position"] is None and state["handoff"]["wait_seconds"] is None


@pytest.mark.django_db
def test_the_handoff_tab_shows_each_waiting_visitors_place(bot, personas, client: Client) -> None:
    rows = _waiting(bot, 3)
    handoff_claim(agent=personas.owner, conversation_public_id=str(rows[0][1].public_id))
    client.force_login(personas.teammate)
    html = client.get("/dashboard/conversations/", {"tab": "handoff", "fragment": "1"}).content.decode()
    assert html.count('data-queue-position="1"') == 1 and "Next in line" in html
    assert html.count('data-queue-position="2"') == 1 and "#2 in line" in html
    assert 'data-queue-position="3"' not in html


def _frames_of(groups: list[str], run: Any, *, quiet_seconds: float = 0.7) -> dict[str, list[dict[str, Any]]]:
    """The frames each group's socket receives while ``run`` executes (until quiet)."""
    layer = get_channel_layer()
    heard: dict[str, list[dict[str, Any]]] = {g: [] for g in groups}

    async def collect() -> None:
        channels = {g: await layer.new_channel() for g in groups}
        for g, channel in channels.items():
            await layer.group_add(g, channel)
        await sync_to_async(run)()

        async def drain(g: str) -> None:
            while True:
                try:
                    message = await asyncio.wait_for(layer.receive(channels[g]), timeout=quiet_seconds)
                except TimeoutError:
                    return
                heard[g].append(message["frame"])

        await asyncio.gather(*(drain(g) for g in groups))

    async_to_sync(collect)()
    return heard


@pytest.mark.django_db(transaction=True)
def test_a_claim_moves_everyone_behind_up_with_one_position_frame_each(bot, personas) -> None:
    rows = _waiting(bot, 3)
    groups = [visitor_group(visitor.public_id) for visitor, _, _ in rows]

    def claim_first() -> None:
        handoff_claim(agent=personas.owner, conversation_public_id=str(rows[0][1].public_id))

    heard = _frames_of(groups, claim_first)
    positions = {g: [f for f in frames if f["type"] == "position"] for g, frames in heard.items()}
    assert positions[groups[0]] == []  # the claimed visitor hears their state, not a place in line
    assert [(f["conversation"], f["position"]) for f in positions[groups[1]]] == [(str(rows[1][1].public_id), 1)]
    assert [f["position"] for f in positions[groups[2]]] == [2]
    assert all("wait_seconds" in f for f in positions[groups[1]] + positions[groups[2]])

    # Resolving the live chat does not move anyone in line: nobody waiting hears a thing.
    def resolve_live() -> None:
        handoff_resolve(agent=personas.owner, conversation_public_id=str(rows[0][1].public_id))

    heard = _frames_of(groups[1:], resolve_live)
    assert [f for frames in heard.values() for f in frames if f["type"] == "position"] == []

    # A visitor ahead leaving the line (resolved unclaimed) moves the last one up again.
    def resolve_waiting() -> None:
        handoff_resolve(agent=personas.teammate, conversation_public_id=str(rows[1][1].public_id))

    heard = _frames_of([groups[2]], resolve_waiting)
    assert [f["position"] for f in heard[groups[2]] if f["type"] == "position"] == [1]
