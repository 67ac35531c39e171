"""Analytics on known data: handoffs per day, median and p90 time to claim, timed-out and late-claim shares."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
import time_machine
from django.test import Client

from chatbots.models import Chatbot
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from handoff.transitions.request import handoff_request
from handoff.transitions.timers import handoff_expire
from pivra.console.analytics import bar_chart, handoff_stats, percentile
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor

pytestmark = pytest.mark.django_db
NOW = datetime(2026, 3, 10, 12, 0, tzinfo=UTC)


def _handoff(
    bot: Chatbot, personas: Personas, requested_at: datetime, *, claim_after: int | None = None, time_out: bool = False
) -> Handoff:
    visitor, conversation = new_visitor(bot)
    key = str(conversation.public_id)
    handoff = handoff_request(visitor=visitor, conversation_public_id=key, trigger="button", now=requested_at)
    if time_out:
        assert handoff_expire(handoff_id=handoff.pk, now=requested_at + timedelta(seconds=181))
    if claim_after is not None:
        handoff_claim(
            agent=personas.teammate, conversation_public_id=key, now=requested_at + timedelta(seconds=claim_after)
        )
    handoff.refresh_from_db()
    return handoff


@pytest.fixture
def known(personas: Personas) -> Personas:
    bot = enable_handoff(personas.chatbot)
    _handoff(bot, personas, datetime(2026, 3, 10, 9, 0, tzinfo=UTC), claim_after=30)
    _handoff(bot, personas, datetime(2026, 3, 10, 10, 0, tzinfo=UTC), claim_after=90)
    _handoff(bot, personas, datetime(2026, 3, 9, 9, 0, tzinfo=UTC), claim_after=60)
    _handoff(bot, personas, datetime(2026, 3, 8, 9, 0, tzinfo=UTC), time_out=True, claim_after=600)  # late claim
    _handoff(bot, personas, datetime(2026, 3, 8, 11, 0, tzinfo=UTC), time_out=True)  # still busy
    _handoff(bot, personas, datetime(2026, 3, 1, 9, 0, tzinfo=UTC), claim_after=1000)  # outside 7 days
    _handoff(bot, personas, datetime(2026, 2, 1, 9, 0, tzinfo=UTC), claim_after=5)  # outside 30 days
    other = enable_handoff(personas.other_chatbot)
    _handoff(other, personas, datetime(2026, 3, 10, 8, 0, tzinfo=UTC), time_out=True)  # another workspace
    return personas


def test_percentile_interpolates_between_ranks() -> None:
    assert percentile([], 0.5) is None
    assert percentile([7], 0.9) == 7
    assert percentile([30, 60, 90, 600], 0.5) == 75
    assert percentile([600, 30, 90, 60], 0.9) == pytest.approx(447)


def test_seven_days_of_known_handoffs(known: Personas) -> None:
    stats = handoff_stats(workspace_id=known.workspace.pk, days=7, now=NOW)
    assert stats.start == datetime(2026, 3, 4, tzinfo=UTC)
    assert [(d.day.isoformat(), d.count) for d in stats.per_day] == [
        ("2026-03-04", 0),
        ("2026-03-05", 0),
        ("2026-03-06", 0),
        ("2026-03-07", 0),
        ("2026-03-08", 2),
        ("2026-03-09", 1),
        ("2026-03-10", 2),
    ]
    assert (stats.total, stats.claimed, stats.timed_out, stats.late_claimed) == (5, 4, 2, 1)
    assert stats.median_claim_seconds == 75  # of 30, 60, 90 and 600 s
    assert stats.p90_claim_seconds == pytest.approx(447)
    assert stats.timed_out_share == pytest.approx(0.4)
    assert stats.late_claim_share == pytest.approx(0.2)


def test_thirty_days_take_in_the_older_handoff(known: Personas) -> None:
    stats = handoff_stats(workspace_id=known.workspace.pk, days=30, now=NOW)
    assert len(stats.per_day) == 30
    assert (stats.total, stats.claimed) == (6, 5)
    assert stats.median_claim_seconds == 90
    assert stats.p90_claim_seconds == pytest.approx(840)


def test_an_empty_period_has_no_figures_rather_than_zeros(personas: Personas) -> None:
    stats = handoff_stats(workspace_id=personas.workspace.pk, days=7, now=NOW)
    assert stats.total == 0
    assert stats.median_claim_seconds is None
    assert stats.timed_out_share is None
    assert len(bar_chart(stats.per_day).bars) == 7


def test_the_chart_scales_bars_to_the_busiest_day(known: Personas) -> None:
    stats = handoff_stats(workspace_id=known.workspace.pk, days=7, now=NOW)
    chart = bar_chart(stats.per_day)
    plot = chart.plot_bottom - chart.plot_top
    assert [bar.height for bar in chart.bars] == [2, 2, 2, 2, plot, plot / 2, plot]  # empty days: a stub
    assert chart.bars[4].label == "Sun 8 Mar: 2 handoffs"


def test_the_analytics_page_shows_the_figures_and_chart(known: Personas) -> None:
    client = Client()
    client.force_login(known.owner)
    with time_machine.travel(NOW, tick=False):
        page = client.get("/dashboard/analytics/", {"days": "7"})
    assert page.status_code == 200
    html = page.content.decode()
    assert page.context["stats"].total == 5
    for text in ("Handoffs per day", "1m 15s", "7m 27s", "40%", "20%", "Sun 8 Mar: 2 handoffs", "<svg"):
        assert text in html, text
    assert 'aria-current="page">7 days' in html


def test_an_unknown_period_falls_back_to_thirty_days(known: Personas) -> None:
    client = Client()
    client.force_login(known.owner)
    with time_machine.travel(NOW, tick=False):
        assert client.get("/dashboard/analytics/", {"days": "3650"}).context["stats"].days == 30
