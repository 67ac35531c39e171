"""Office hours of a chatbot: whether the team is open at an instant, and the checks every owner input
goes through (time zone, weekly ranges, closed dates) before it is saved.

Semantics, in the chatbot's time zone and on the wall clock (so a DST change moves the hours with
the clock, as a shop's opening hours do):
- ``office_hours`` maps "mon".."sun" to ranges ``[["09:00", "17:00"], ...]``; a range whose end is at
  or before its start crosses midnight into the next day ("22:00" to "02:00"; "00:00" to "00:00" is 24 h).
- A closed date closes the whole local day, and the ranges that would have started on it do not run
  at all — not even their part past midnight.
- Disabled office hours mean always open.
"""

from __future__ import annotations

import itertools
import re
import zoneinfo
from collections.abc import Mapping
from datetime import date, datetime, time, timedelta
from functools import cache
from typing import TYPE_CHECKING, Any

from django.utils.translation import gettext
from django.utils.translation import gettext_lazy as _

from pivra.errors import DomainError

if TYPE_CHECKING:
    from chatbots.models import Chatbot

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
DAY_NAMES = dict(
    zip(
        DAYS,
        (_("Monday"), _("Tuesday"), _("Wednesday"), _("Thursday"), _("Friday"), _("Saturday"), _("Sunday")),
        strict=True,
    )
)
MAX_RANGES_PER_DAY = 6
MAX_CLOSED_DATES = 366
MAX_TIMEZONE_LENGTH = 64
MINUTES_PER_DAY = 24 * 60
MINUTES_PER_WEEK = 7 * MINUTES_PER_DAY
_TIME = re.compile(r"^([01]?\d|2[0-4])[:.h]([0-5]\d)$")
_RANGE_SEPARATOR = re.compile("\\s*(?:-|\u2013|\u2014|to)\\s*")

Range = tuple[str, str]


@cache
def timezone_names() -> tuple[str, ...]:
    """Every IANA zone name this machine knows, sorted (read once: it scans the zone directory)."""
    return tuple(sorted(zoneinfo.available_timezones()))


@cache
def _known_zones() -> frozenset[str]:
    return frozenset(timezone_names())


def timezone_clean(name: object) -> str:
    """A known IANA zone name, else DomainError — never a path or a POSIX TZ string."""
    if not isinstance(name, str) or not name.strip() or len(name) > MAX_TIMEZONE_LENGTH:
        raise DomainError("invalid_timezone", gettext("Choose a time zone from the list, e.g. Europe/Paris."))
    name = name.strip()
    if name not in _known_zones():
        raise DomainError(
            "invalid_timezone",
            gettext("Unknown time zone %(name)r: choose one from the list.") % {"name": name[:MAX_TIMEZONE_LENGTH]},
        )
    return name


def time_clean(text: object) -> str:
    """``"9:00"``, ``"09.00"``, ``"9h00"`` → ``"09:00"``; ``"24:00"`` → ``"00:00"`` (midnight at the end)."""
    match = _TIME.match(text.strip()) if isinstance(text, str) and len(text) <= 10 else None
    if match is None or (match.group(1) == "24" and match.group(2) != "00"):
        shown = str(text)[:10] if isinstance(text, str) else "this"
        raise DomainError(
            "invalid_office_hours",
            gettext("%(value)r is not a time: use HH:MM, e.g. 09:00 or 17:30.") % {"value": shown},
        )
    hour = int(match.group(1)) % 24
    return f"{hour:02d}:{match.group(2)}"


def _minutes(hhmm: str) -> int:
    hour, minute = hhmm.split(":")
    return int(hour) * 60 + int(minute)


def _span(day_index: int, start: str, end: str) -> tuple[int, int]:
    """A range as minutes from Monday 00:00; the end past the start (crossing midnight adds a day)."""
    begin = day_index * MINUTES_PER_DAY + _minutes(start)
    finish = day_index * MINUTES_PER_DAY + _minutes(end)
    if finish <= begin:
        finish += MINUTES_PER_DAY
    return begin, finish


def _shown(day: str, start: str, end: str) -> str:
    return f"{DAY_NAMES[day]} {start}-{end}"


def day_ranges_parse(*, day: str, text: str) -> list[Range]:
    """One day's ranges as typed on the settings page: ``"09:00-12:00, 13:00-17:30"``; empty = closed."""
    if len(text) > 200:
        raise DomainError(
            "invalid_office_hours",
            gettext("%(day)s: too long; use at most %(n)d ranges.") % {"day": DAY_NAMES[day], "n": MAX_RANGES_PER_DAY},
        )
    ranges: list[Range] = []
    for part in (p.strip() for p in re.split(r"[,;\n]", text)):
        if not part:
            continue
        pieces = _RANGE_SEPARATOR.split(part)
        if len(pieces) != 2:
            raise DomainError(
                "invalid_office_hours",
                gettext("%(day)s: %(value)r is not a range; write it like 09:00-17:00.")
                % {"day": DAY_NAMES[day], "value": part[:40]},
            )
        try:
            ranges.append((time_clean(pieces[0]), time_clean(pieces[1])))
        except DomainError as exc:
            raise DomainError(
                "invalid_office_hours", gettext("%(day)s: %(problem)s") % {"day": DAY_NAMES[day], "problem": exc.detail}
            ) from None
    return ranges


def weekly_clean(weekly: object) -> dict[str, list[list[str]]]:
    """The weekly schedule checked as a whole: known days, valid times, at most MAX_RANGES_PER_DAY a
    day, no empty range, and no two ranges overlapping (including one that crosses midnight into the
    next day's first range, and Sunday night into Monday)."""
    if not isinstance(weekly, Mapping):
        raise DomainError("invalid_office_hours", gettext("Office hours must map each day to its ranges."))
    unknown = [str(key)[:10] for key in weekly if key not in DAYS]
    if unknown:
        raise DomainError(
            "invalid_office_hours", gettext("Unknown day %(day)r: use mon, tue, … sun.") % {"day": unknown[0]}
        )
    cleaned: dict[str, list[list[str]]] = {}
    spans: list[tuple[int, int, str]] = []
    for index, day in enumerate(DAYS):
        ranges = weekly.get(day) or []
        if not isinstance(ranges, list | tuple) or len(ranges) > MAX_RANGES_PER_DAY:
            raise DomainError(
                "invalid_office_hours",
                gettext("%(day)s: use at most %(n)d ranges a day.") % {"day": DAY_NAMES[day], "n": MAX_RANGES_PER_DAY},
            )
        cleaned[day] = []
        for pair in ranges:
            if not isinstance(pair, list | tuple) or len(pair) != 2:
                raise DomainError(
                    "invalid_office_hours",
                    gettext("%(day)s: each range needs a start and an end.") % {"day": DAY_NAMES[day]},
                )
            try:
                start, end = time_clean(pair[0]), time_clean(pair[1])
            except DomainError as exc:
                raise DomainError(
                    "invalid_office_hours",
                    gettext("%(day)s: %(problem)s") % {"day": DAY_NAMES[day], "problem": exc.detail},
                ) from None
            cleaned[day].append([start, end])
            begin, finish = _span(index, start, end)
            spans.append((begin, finish, _shown(day, start, end)))
        cleaned[day].sort(key=lambda pair: pair[0])
    _refuse_overlaps(spans)
    return cleaned


def _refuse_overlaps(spans: list[tuple[int, int, str]]) -> None:
    # On the week's circle: a Sunday range that crosses midnight also meets Monday's first range.
    circle = sorted(spans + [(b + MINUTES_PER_WEEK, f + MINUTES_PER_WEEK, s) for b, f, s in spans])
    for (_start, finish, shown), (begin, _end, other) in itertools.pairwise(circle):
        if begin < finish and shown != other:
            raise DomainError(
                "invalid_office_hours",
                gettext("%(range)s overlaps %(other)s: merge them into one range.") % {"range": shown, "other": other},
            )
        if begin < finish:
            raise DomainError("invalid_office_hours", gettext("%(range)s is listed twice.") % {"range": shown})


def closed_dates_clean(dates: object) -> list[str]:
    """ISO dates (``2026-12-25``), deduplicated and sorted, at most MAX_CLOSED_DATES."""
    if not isinstance(dates, list | tuple):
        raise DomainError("invalid_closed_dates", gettext("Closed dates must be a list of dates like 2026-12-25."))
    if len(dates) > MAX_CLOSED_DATES:
        raise DomainError("invalid_closed_dates", gettext("Use at most %(n)d closed dates.") % {"n": MAX_CLOSED_DATES})
    cleaned: set[str] = set()
    for value in dates:
        text = value.strip() if isinstance(value, str) else ""
        try:
            if len(text) != 10:
                raise ValueError
            cleaned.add(date.fromisoformat(text).isoformat())
        except ValueError:
            shown = str(value)[:20] if isinstance(value, str) else "this"
            raise DomainError(
                "invalid_closed_dates",
                gettext("%(value)r is not a date: use YYYY-MM-DD, e.g. 2026-12-25.") % {"value": shown},
            ) from None
    return sorted(cleaned)


def closed_dates_parse(*, text: str) -> list[str]:
    """The settings page's closed dates: one per line (or comma separated)."""
    parts = [part.strip() for part in re.split(r"[\n,;]", text) if part.strip()]
    if len(parts) > MAX_CLOSED_DATES:
        raise DomainError("invalid_closed_dates", gettext("Use at most %(n)d closed dates.") % {"n": MAX_CLOSED_DATES})
    return closed_dates_clean(parts)


# --- the question asked on every handoff request ----------------------------------------------------


def _zone(name: str) -> zoneinfo.ZoneInfo:
    try:
        return zoneinfo.ZoneInfo(timezone_clean(name))
    except DomainError:
        return zoneinfo.ZoneInfo("UTC")  # the forms never save one; a hand-edited row must not break requests


def _stored_ranges(weekly: Any, day: str) -> list[tuple[time, time]]:
    ranges = weekly.get(day) if isinstance(weekly, Mapping) else None
    parsed = []
    for pair in ranges if isinstance(ranges, list) else []:
        try:
            parsed.append((time.fromisoformat(time_clean(pair[0])), time.fromisoformat(time_clean(pair[1]))))
        except (DomainError, TypeError, IndexError, KeyError):
            continue
    return parsed


def _stored_closed(dates: Any) -> set[date]:
    closed = set()
    for value in dates if isinstance(dates, list) else []:
        try:
            closed.add(date.fromisoformat(value))
        except (TypeError, ValueError):
            continue
    return closed


def office_open_at(*, chatbot: Chatbot, at: datetime) -> bool:
    """Whether the chatbot's team is within office hours at the instant ``at`` (aware). Disabled = open."""
    if not chatbot.office_hours_enabled:
        return True
    # Naive local wall-clock times on both sides: a range follows the clock across a DST change (the
    # skipped hour is never open, the repeated hour is open twice).
    local = at.astimezone(_zone(chatbot.office_hours_timezone)).replace(tzinfo=None)
    closed = _stored_closed(chatbot.office_closed_dates)
    if local.date() in closed:
        return False
    for day in (local.date(), local.date() - timedelta(days=1)):
        if day in closed:
            continue
        for start, end in _stored_ranges(chatbot.office_hours, DAYS[day.weekday()]):
            begin = datetime.combine(day, start)
            finish = datetime.combine(day if end > start else day + timedelta(days=1), end)
            if begin <= local < finish:
                return True
    return False


def handoff_hidden_at(*, chatbot: Chatbot, at: datetime) -> bool:
    """The owner hides "Talk to a human" outside office hours, and it is outside them now."""
    return chatbot.hide_handoff_outside_hours and not office_open_at(chatbot=chatbot, at=at)


def weekly_as_text(*, weekly: Any) -> dict[str, str]:
    """The stored schedule as the settings page's per-day text: ``{"mon": "09:00-12:00, 13:00-17:30"}``."""
    text = {}
    for day in DAYS:
        ranges = weekly.get(day) if isinstance(weekly, Mapping) else None
        pairs = ranges if isinstance(ranges, list) else []
        text[day] = ", ".join(f"{p[0]}-{p[1]}" for p in pairs if isinstance(p, list | tuple) and len(p) == 2)
    return text
