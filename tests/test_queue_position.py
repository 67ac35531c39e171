"""Queue position and expected wait: the line's order, the numbered places, the median wait in
line, the widget's snapshot (socket and HTTP), the Handoff tab, the coalesced announcement task
and the live position frames a claim sends to the visitors still waiting."""

from __future__ import annotations

import asyncio
import json
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync, sync_to_async
from channels.layers import get_channel_layer
from django.core.cache import cache
from django.test import Client
from django.utils import timezone

from chatbots.models import Chatbot
from conversations.models import Event
from handoff import queue_position as qp
from handoff.models import Handoff
from handoff.queue_position import (
    MIN_CLAIMS,
    expected_wait_seconds,
    median_wait_seconds,
    queue_places,
    queue_position,
    queue_positions_announce,
)
from handoff.state import conversation_state
from handoff.transitions.claim import handoff_claim
from handoff.transitions.offers import REASON_EXPIRED, handoff_offer_end
from handoff.transitions.requeue import handoff_requeue
from handoff.transitions.resolve import handoff_resolve
from pivra.realtime import visitor_group
from pivra.redis_client import shared_redis
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request


@pytest.fixture
def bot(personas: Personas) -> Chatbot:
    """Handoff on; requests wait in line even with nobody online (the skip-the-wait path is item 2's)."""
    bot = enable_handoff(personas.chatbot)
    Chatbot.objects.filter(pk=bot.pk).update(handoff_skip_wait_when_offline=False)
    bot.refresh_from_db()
    return bot


@pytest.fixture(autouse=True)
def enqueued(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, bool, float]]:
    """The announcement tasks enqueued (recorded, not sent: no worker runs in these tests)."""
    calls: list[tuple[int, bool, float]] = []

    def record(workspace_id: int, *, trailing: bool, countdown: float) -> None:
        calls.append((workspace_id, trailing, countdown))

    monkeypatch.setattr(qp, "_enqueue", record)
    return calls


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, Any]]:
    """The position frames an announcement publishes (recorded; the publish succeeds)."""
    frames: list[dict[str, Any]] = []

    def record(batch: list[tuple[str, dict[str, Any]]]) -> bool:
        frames.extend(frame for _group, frame in batch)
        return True

    monkeypatch.setattr(qp, "send_frames_now", record)
    return frames


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
    assert queue_places(workspace_id=bot.workspace_id, handoff_ids=[h.pk for h in handoffs]) == {
        handoffs[1].pk: 1,
        handoffs[2].pk: 2,
        handoffs[3].pk: 3,
    }
    assert queue_places(workspace_id=bot.workspace_id, handoff_ids=[handoffs[3].pk]) == {handoffs[3].pk: 3}


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
    _claims(bot, personas, [5000, 6000, 7000], timed_out_at=timezone.now() - timedelta(minutes=30))
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
def test_a_claim_moves_everyone_behind_up_with_one_position_frame_each(bot, personas, monkeypatch) -> None:
    # The announcement task, run at once where it is enqueued (the real one waits for a worker).
    monkeypatch.setattr(
        qp,
        "_enqueue",
        lambda ws, *, trailing, countdown: qp.queue_positions_announce_task(workspace_id=ws, trailing=trailing),
    )
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


@pytest.mark.django_db(transaction=True)
def test_a_committed_queue_change_enqueues_the_announcement_instead_of_running_it(bot, personas, enqueued) -> None:
    rows = _waiting(bot, 2)
    enqueued.clear()
    shared_redis().delete(qp._lead_key(bot.workspace_id), qp._trail_key(bot.workspace_id))
    handoff_claim(agent=personas.owner, conversation_public_id=str(rows[0][1].public_id))
    assert enqueued == [(bot.workspace_id, False, 0.0)]


@pytest.mark.django_db
def test_queue_changes_are_coalesced_to_one_announcement_a_window(bot, enqueued) -> None:
    ws = bot.workspace_id
    for _ in range(5):  # a burst: the first runs now, the rest share one trailing run at the window's end
        qp.queue_positions_schedule(workspace_id=ws)
    assert [(w, trailing) for w, trailing, _ in enqueued] == [(ws, False), (ws, True)]
    assert 0 < enqueued[1][2] <= qp.COALESCE_MS / 1000
    # The trailing run frees its slot before it reads the line: a change after it schedules another,
    # a window later (it opened a new window).
    qp.queue_positions_announce_task(workspace_id=ws, trailing=True)
    qp.queue_positions_schedule(workspace_id=ws)
    qp.queue_positions_schedule(workspace_id=ws)
    assert [(w, trailing) for w, trailing, _ in enqueued[2:]] == [(ws, True)]
    assert enqueued[2][2] > 0.5  # the window started at that run


@pytest.mark.django_db
def test_only_the_first_numbered_places_get_a_number_and_frames(bot, personas, sent, monkeypatch, client) -> None:
    monkeypatch.setattr(qp, "NUMBERED", 2)
    rows = _waiting(bot, 3)
    handoffs = [h for _, _, h in rows]
    assert [queue_position(handoff=h) for h in handoffs] == [1, 2, None]
    state = conversation_state(rows[2][1])["handoff"]
    assert (state["position"], state["position_over"]) == (None, 2) and "wait_seconds" in state
    assert conversation_state(rows[1][1])["handoff"]["position_over"] is None
    ids = [h.pk for h in handoffs]
    assert queue_places(workspace_id=bot.workspace_id, handoff_ids=ids) == {ids[0]: 1, ids[1]: 2, ids[2]: None}
    # Announcements read and send the numbered places only.
    assert queue_positions_announce(workspace_id=bot.workspace_id) == 2
    assert sorted(f["position"] for f in sent) == [1, 2]
    client.force_login(personas.teammate)
    html = client.get("/dashboard/conversations/", {"tab": "handoff", "fragment": "1"}).content.decode()
    assert html.count('data-queue-position="over"') == 1


@pytest.mark.django_db
def test_a_conversation_back_near_the_front_tells_the_one_pushed_past_the_numbered_places(
    bot, personas, sent, monkeypatch
) -> None:
    monkeypatch.setattr(qp, "NUMBERED", 2)
    start = timezone.now() - timedelta(minutes=30)
    _, early_conversation, early = _waiting(bot, 1, start=start)[0]
    handoff_claim(agent=personas.owner, conversation_public_id=str(early_conversation.public_id))
    rows = _waiting(bot, 3)
    queue_positions_announce(workspace_id=bot.workspace_id)
    sent.clear()
    # The live chat's agent leaves: it returns to the line near the front (its request is the oldest).
    assert handoff_requeue(handoff_id=early.pk, reason="released", actor=personas.owner)
    queue_positions_announce(workspace_id=bot.workspace_id)
    heard = {f["conversation"]: (f["position"], f["position_over"]) for f in sent}
    assert heard == {
        str(early_conversation.public_id): (1, None),
        str(rows[0][1].public_id): (2, None),
        str(rows[1][1].public_id): (None, 2),  # was number 2: now further back
    }


@pytest.mark.django_db
def test_a_failed_publish_is_sent_again_by_the_next_announcement(bot, monkeypatch) -> None:
    _waiting(bot, 2)
    monkeypatch.setattr(qp, "send_frames_now", lambda frames: False)
    assert queue_positions_announce(workspace_id=bot.workspace_id) == 0
    assert not shared_redis().exists(qp._positions_key(bot.workspace_id))
    monkeypatch.setattr(qp, "send_frames_now", lambda frames: True)
    assert queue_positions_announce(workspace_id=bot.workspace_id) == 2  # not "nothing changed"
    assert queue_positions_announce(workspace_id=bot.workspace_id) == 0


@pytest.mark.django_db
def test_requeue_and_a_transfer_nobody_accepted_put_the_handoff_back_in_line_now(bot, personas) -> None:
    start = timezone.now() - timedelta(hours=1)
    _, conversation, handoff = _waiting(bot, 1, start=start)[0]
    assert handoff.queued_at == handoff.requested_at == start
    handoff_claim(agent=personas.owner, conversation_public_id=str(conversation.public_id))
    later = timezone.now()
    assert handoff_requeue(handoff_id=handoff.pk, reason="released", actor=personas.owner, now=later)
    handoff.refresh_from_db()
    assert (handoff.requested_at, handoff.queued_at) == (start, later)
    # A transfer offer that expires: back in the line, queued from that moment.
    expired = later + timedelta(seconds=1)
    Handoff.objects.filter(pk=handoff.pk).update(
        offered_to=personas.teammate, offered_by=personas.owner, offer_kind="transfer", offer_expires_at=expired
    )
    assert qp.queue_position(handoff=Handoff.objects.get(pk=handoff.pk)) is None  # waits for the colleague
    back = expired + timedelta(seconds=1)
    assert handoff_offer_end(handoff_id=handoff.pk, reason=REASON_EXPIRED, now=back)
    handoff.refresh_from_db()
    assert (handoff.status, handoff.queued_at, handoff.offered_to_id) == (Handoff.Status.PENDING, back, None)


def _claimed(bot: Chatbot, personas: Personas, *, waited: int, **extra: Any) -> Handoff:
    """A handoff requested an hour before it was last queued, claimed ``waited`` s after that."""
    now = timezone.now()
    _, _, handoff = _waiting(bot, 1, start=now - timedelta(hours=2))[0]
    queued = now - timedelta(minutes=30)
    Handoff.objects.filter(pk=handoff.pk).update(
        status=Handoff.Status.ACTIVE,
        claimed_by=personas.owner,
        queued_at=queued,
        claimed_at=queued + timedelta(seconds=waited),
        **{k: (queued + v if isinstance(v, timedelta) else v) for k, v in extra.items()},
    )
    handoff.refresh_from_db()
    return handoff


@pytest.mark.django_db
def test_the_wait_is_measured_from_the_last_time_in_line_and_counts_claims_from_the_line(bot, personas) -> None:
    ws = bot.workspace_id
    for _ in range(MIN_CLAIMS - 1):
        _claimed(bot, personas, waited=30)  # released/requeued chats: from queued_at, not the request
    # Not claims from the line: a late claim (Team busy since it was queued), a colleague accepting a
    # transfer, a take-over (both leave their event after queued_at).
    _claimed(bot, personas, waited=5000, timed_out_at=timedelta(seconds=60))
    for kind in ("handoff.transferred", "handoff.taken_over"):
        moved = _claimed(bot, personas, waited=4000)
        Event.objects.create(conversation_id=moved.conversation_id, seq=900, kind=kind, author=Event.Author.SYSTEM)
    assert median_wait_seconds(workspace_id=ws) is None  # only MIN_CLAIMS - 1 count
    # A handoff that timed out once, then was requeued and claimed from the line, counts again.
    _claimed(bot, personas, waited=30, timed_out_at=timedelta(seconds=-600))
    assert median_wait_seconds(workspace_id=ws) == 30


def _api(client: Client, method: str, url: str, body: dict[str, Any], bearer: str | None = None) -> dict[str, Any]:
    headers = {"Authorization": f"Bearer {bearer}"} if bearer else {}
    if method == "get":
        response = client.get(url, body, headers=headers)
    else:
        response = client.post(url, json.dumps(body), content_type="application/json", headers=headers)
    assert response.status_code == 200, response.content
    return dict(response.json())


@pytest.mark.django_db
def test_the_widget_http_state_carries_every_snapshot_field(bot, personas) -> None:
    _claims(bot, personas, [90] * MIN_CLAIMS)
    _waiting(bot, 1)  # someone ahead
    cache.delete(f"queue-wait:{bot.workspace_id}")
    client = Client()
    session = _api(client, "post", "/api/widget/session", {"public_key": bot.public_key, "locale": "en-GB"})
    token = session["token"]
    _api(client, "post", "/api/widget/handoff", {"client_id": "h-1"}, token)
    conversation = Handoff.objects.get(conversation__visitor__public_id=session["visitor"]).conversation
    expected = conversation_state(conversation)["handoff"]
    for state in (
        _api(client, "get", "/api/widget/events", {"conversation": "", "after_seq": 0}, token)["state"],
        _api(client, "post", "/api/widget/session", {"public_key": bot.public_key, "token": token})["state"],
    ):
        assert (state["handoff"]["position"], state["handoff"]["wait_seconds"]) == (2, 90)
        assert state["handoff"] == expected  # every key of the snapshot survives the HTTP schema
