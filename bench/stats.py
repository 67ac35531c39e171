"""Percentiles and fits for the bench's figures (no numpy needed)."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def percentile(values: Sequence[float], q: float) -> float | None:
    """Nearest-rank percentile (``q`` in 0..100); None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(q / 100 * len(ordered)))
    return ordered[min(rank, len(ordered)) - 1]


def summary_ms(seconds: Sequence[float]) -> dict[str, Any]:
    """p50 / p99 / max in milliseconds of durations given in seconds."""

    def ms(value: float | None) -> float | None:
        return None if value is None else round(value * 1000, 2)

    return {
        "count": len(seconds),
        "p50_ms": ms(percentile(seconds, 50)),
        "p99_ms": ms(percentile(seconds, 99)),
        "max_ms": ms(max(seconds) if seconds else None),
    }


def slope(points: Sequence[tuple[float, float]]) -> float | None:
    """Least-squares slope of y over x."""
    if len(points) < 2:
        return None
    n = len(points)
    mean_x = sum(x for x, _ in points) / n
    mean_y = sum(y for _, y in points) / n
    var_x = sum((x - mean_x) ** 2 for x, _ in points)
    if var_x == 0:
        return None
    return sum((x - mean_x) * (y - mean_y) for x, y in points) / var_x


def storm_summary(
    *,
    method: str,
    claimers: int,
    winners_per_trial: list[int],
    winner_seconds: Sequence[float],
    loser_seconds: Sequence[float],
    errors: list[str],
) -> dict[str, Any]:
    """One claim storm's figures, the same for the HTTP and the in-process storm."""
    return {
        "method": method,
        "claimers": claimers,
        "trials": len(winners_per_trial),
        "winners_per_trial": winners_per_trial,
        "trials_with_one_winner": sum(1 for w in winners_per_trial if w == 1),
        "errors": len(errors),
        "error_sample": errors[:3],
        "winner": summary_ms(winner_seconds),
        "loser": summary_ms(loser_seconds),
    }
