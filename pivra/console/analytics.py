"""Handoff analytics for one workspace and period: volume per day, time to claim, timeouts, late claims."""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date, datetime, time, timedelta

from django.db.models import Count
from django.db.models.functions import TruncDate
from django.utils import timezone

from handoff.models import Handoff

PERIODS = (7, 30, 90)
DEFAULT_PERIOD = 30


@dataclass(frozen=True)
class DayCount:
    day: date
    count: int


@dataclass(frozen=True)
class HandoffStats:
    days: int
    start: datetime
    end: datetime
    per_day: list[DayCount]
    total: int
    claimed: int
    timed_out: int
    late_claimed: int
    median_claim_seconds: float | None
    p90_claim_seconds: float | None

    @property
    def timed_out_share(self) -> float | None:
        """Share of the period's handoffs that reached Team busy."""
        return self.timed_out / self.total if self.total else None

    @property
    def late_claim_share(self) -> float | None:
        """Share of the period's handoffs claimed after they had timed out."""
        return self.late_claimed / self.total if self.total else None

    @property
    def busiest(self) -> int:
        return max((d.count for d in self.per_day), default=0)


def share_text(share: float | None) -> str:
    """0.125 → "12.5%", 0.25 → "25%", nothing to divide → a dash."""
    if share is None:
        return "\u2013"  # en dash
    return f"{share * 100:.1f}".removesuffix(".0") + "%"


def percentile(values: list[float], fraction: float) -> float | None:
    """Linear interpolation between closest ranks (PostgreSQL's ``percentile_cont``)."""
    if not values:
        return None
    ordered = sorted(values)
    position = (len(ordered) - 1) * fraction
    low, high = math.floor(position), math.ceil(position)
    return ordered[low] + (ordered[high] - ordered[low]) * (position - low)


def handoff_stats(*, workspace_id: int, days: int = DEFAULT_PERIOD, now: datetime | None = None) -> HandoffStats:
    """The last ``days`` calendar days (today included) in the site's time zone, by request time."""
    now = now or timezone.now()
    zone = timezone.get_current_timezone()
    today = timezone.localtime(now, zone).date()
    first_day = today - timedelta(days=days - 1)
    start = timezone.make_aware(datetime.combine(first_day, time.min), zone)
    handoffs = Handoff.objects.filter(workspace_id=workspace_id, requested_at__gte=start, requested_at__lte=now)

    counts = dict(
        handoffs.annotate(day=TruncDate("requested_at", tzinfo=zone))
        .values("day")
        .annotate(n=Count("pk"))
        .values_list("day", "n")
    )
    per_day = [DayCount(day, counts.get(day, 0)) for day in (first_day + timedelta(n) for n in range(days))]

    claim_seconds: list[float] = []
    timed_out = late = 0
    for requested_at, claimed_at, timed_out_at in handoffs.values_list(
        "requested_at", "claimed_at", "timed_out_at"
    ).iterator(chunk_size=5000):
        if claimed_at is not None:
            claim_seconds.append((claimed_at - requested_at).total_seconds())
        if timed_out_at is not None:
            timed_out += 1
            if claimed_at is not None and claimed_at >= timed_out_at:
                late += 1
    return HandoffStats(
        days=days,
        start=start,
        end=now,
        per_day=per_day,
        total=sum(counts.values()),
        claimed=len(claim_seconds),
        timed_out=timed_out,
        late_claimed=late,
        median_claim_seconds=percentile(claim_seconds, 0.5),
        p90_claim_seconds=percentile(claim_seconds, 0.9),
    )


@dataclass(frozen=True)
class Bar:
    x: float
    cx: float
    y: float
    width: float
    height: float
    label: str
    count: int
    tick: str


@dataclass(frozen=True)
class Chart:
    width: int
    height: int
    plot_top: int
    plot_bottom: int
    plot_left: int
    bars: list[Bar]
    gridlines: list[tuple[float, int]]


def bar_chart(per_day: list[DayCount], *, width: int = 760, height: int = 220) -> Chart:
    """Geometry for an inline SVG bar chart (drawn by the template: no script, no library)."""
    left, right, top, bottom = 36, 8, 12, height - 26
    peak = max((d.count for d in per_day), default=0)
    step = _nice_step(peak)
    axis_max = max(step * math.ceil(peak / step), step) if peak else 4
    slot = (width - left - right) / max(len(per_day), 1)
    gap = min(6.0, slot * 0.25)
    label_every = 1 if len(per_day) <= 14 else (5 if len(per_day) <= 31 else 15)
    bars = []
    for index, day in enumerate(per_day):
        # An empty day keeps a 2 px stub so the axis reads as days, not as a gap.
        bar_height = (bottom - top) * day.count / axis_max if day.count else 2
        tick = day.day.strftime("%-d %b") if (len(per_day) - 1 - index) % label_every == 0 else ""
        bars.append(
            Bar(
                x=round(left + index * slot + gap / 2, 2),
                cx=round(left + index * slot + slot / 2, 2),
                y=round(bottom - bar_height, 2),
                width=round(slot - gap, 2),
                height=round(bar_height, 2),
                label=f"{day.day.strftime('%a %-d %b')}: {day.count} handoff{'s' if day.count != 1 else ''}",
                count=day.count,
                tick=tick,
            )
        )
    lines = [(round(bottom - (bottom - top) * value / axis_max, 2), value) for value in range(0, axis_max + 1, step)]
    return Chart(width, height, top, bottom, left, bars, lines)


def _nice_step(peak: int) -> int:
    """A grid step giving at most ~4 lines: 1, 2, 5, 10, 20, 50…"""
    if peak <= 4:
        return 1
    raw = peak / 4
    magnitude = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 5, 10):
        if raw <= factor * magnitude:
            return int(factor * magnitude)
    return int(10 * magnitude)
