"""Office hours: open or not at an instant, in the chatbot's zone on the wall clock (DST weeks in two
zones, a range crossing midnight, closed dates), and the checks every owner input goes through."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from chatbots.handoff_options import HandoffOptions, chatbot_update_handoff_options
from chatbots.models import Chatbot
from chatbots.office_hours import (
    MAX_CLOSED_DATES,
    MAX_RANGES_PER_DAY,
    closed_dates_parse,
    day_ranges_parse,
    office_open_at,
    weekly_clean,
)
from pivra.errors import DomainError
from tests.factories import Personas

pytestmark = pytest.mark.django_db

WEEKDAYS_9_TO_5 = {day: [["09:00", "17:00"]] for day in ("mon", "tue", "wed", "thu", "fri")}


def _hours(bot: Chatbot, *, zone: str, weekly: dict[str, Any], closed: list[str] | None = None) -> Chatbot:
    options = HandoffOptions(
        offline_message=bot.handoff_offline_message,
        office_hours_enabled=True,
        timezone=zone,
        weekly=weekly,
        closed_dates=closed or [],
    )
    bot = chatbot_update_handoff_options(chatbot=bot, options=options)
    return Chatbot.objects.get(pk=bot.pk)  # as every request reads it


def _open(bot: Chatbot, utc: str) -> bool:
    return office_open_at(chatbot=bot, at=datetime.fromisoformat(utc).replace(tzinfo=UTC))


def test_disabled_office_hours_are_always_open(personas: Personas) -> None:
    bot = personas.chatbot
    assert bot.office_hours_enabled is False
    assert _open(bot, "2026-12-25T03:00") and _open(bot, "2026-03-29T01:30")


def test_paris_hours_follow_the_clock_across_the_march_dst_change(personas: Personas) -> None:
    # 2026-03-29: Paris goes from UTC+1 to UTC+2 at 02:00 local.
    bot = _hours(personas.chatbot, zone="Europe/Paris", weekly={**WEEKDAYS_9_TO_5, "sun": [["01:00", "04:00"]]})
    # Friday before: 09:00 local is 08:00 UTC.
    assert not _open(bot, "2026-03-27T07:59")
    assert _open(bot, "2026-03-27T08:00")
    assert _open(bot, "2026-03-27T15:59") and not _open(bot, "2026-03-27T16:00")
    # Monday after: 09:00 local is 07:00 UTC — a fixed UTC+1 would still say closed at 07:30.
    assert not _open(bot, "2026-03-30T06:59")
    assert _open(bot, "2026-03-30T07:30")
    assert _open(bot, "2026-03-30T14:59") and not _open(bot, "2026-03-30T15:00")
    # The change night itself: 01:00-04:00 local is 00:00-02:00 UTC (two real hours, 02:xx never exists).
    assert not _open(bot, "2026-03-28T23:59")
    assert _open(bot, "2026-03-29T00:00") and _open(bot, "2026-03-29T00:59")
    assert _open(bot, "2026-03-29T01:00")  # 03:00 CEST
    assert _open(bot, "2026-03-29T01:59") and not _open(bot, "2026-03-29T02:00")  # 04:00 CEST


def test_new_york_hours_follow_the_clock_across_the_november_dst_change(personas: Personas) -> None:
    # 2026-11-01: New York goes from UTC-4 to UTC-5 at 02:00 local (01:00-02:00 happens twice).
    bot = _hours(
        personas.chatbot,
        zone="America/New_York",
        weekly={**WEEKDAYS_9_TO_5, "sun": [["01:00", "02:00"]]},
    )
    assert _open(bot, "2026-10-30T13:00") and not _open(bot, "2026-10-30T12:59")  # Friday 09:00 EDT
    assert _open(bot, "2026-11-02T14:00") and not _open(bot, "2026-11-02T13:30")  # Monday 09:00 EST
    assert _open(bot, "2026-11-02T21:59") and not _open(bot, "2026-11-02T22:00")  # 17:00 EST
    # 01:00-02:00 on the change night is open twice: 05:00-06:00 UTC (EDT) and 06:00-07:00 UTC (EST).
    assert not _open(bot, "2026-11-01T04:59")
    assert _open(bot, "2026-11-01T05:00") and _open(bot, "2026-11-01T06:30")
    assert not _open(bot, "2026-11-01T07:00")


def test_a_range_crossing_midnight_runs_into_the_next_day(personas: Personas) -> None:
    # Saturday 22:00 to Sunday 02:00 in New York, on the DST night; Sunday itself has no hours.
    bot = _hours(personas.chatbot, zone="America/New_York", weekly={"sat": [["22:00", "02:00"]]})
    assert not _open(bot, "2026-11-01T01:59")  # Sat 21:59 EDT
    assert _open(bot, "2026-11-01T02:00")  # Sat 22:00 EDT
    assert _open(bot, "2026-11-01T05:30")  # Sun 01:30 EDT
    assert _open(bot, "2026-11-01T06:30")  # Sun 01:30 EST
    assert not _open(bot, "2026-11-01T07:00")  # Sun 02:00 EST
    assert not _open(bot, "2026-11-01T18:00")  # Sunday afternoon: Sunday has no hours of its own


def test_a_closed_date_closes_its_whole_local_day_and_the_shift_that_starts_on_it(personas: Personas) -> None:
    # 2026-12-25 is a Friday; Thursday night runs 22:00-02:00 into it, Friday night 22:00-02:00 out of it.
    weekly = {**WEEKDAYS_9_TO_5, "thu": [["09:00", "17:00"], ["22:00", "02:00"]], "fri": [["22:00", "02:00"]]}
    bot = _hours(personas.chatbot, zone="America/New_York", weekly=weekly, closed=["2026-12-25"])
    assert _open(bot, "2026-12-24T15:00")  # Thursday 10:00 EST
    assert _open(bot, "2026-12-25T04:00")  # Thursday 23:00 EST: the night before is not closed
    assert not _open(bot, "2026-12-25T06:00")  # Friday 01:00 EST: the closed date, even inside that range
    assert not _open(bot, "2026-12-25T15:00")  # Friday 10:00 EST
    assert not _open(bot, "2026-12-26T03:30")  # Friday 22:30 EST (already the 26th in UTC): still closed
    assert not _open(bot, "2026-12-26T06:00")  # Saturday 01:00: the shift that started on the closed date
    assert _open(bot, "2027-01-02T04:00")  # the next Friday night (23:00 EST) is open again


def test_the_weekly_schedule_refuses_what_it_cannot_mean() -> None:
    with pytest.raises(DomainError, match="overlaps"):
        weekly_clean({"mon": [["09:00", "12:00"], ["11:00", "14:00"]]})
    with pytest.raises(DomainError, match="Monday 22:00-03:00 overlaps Tuesday 02:00-05:00"):
        weekly_clean({"mon": [["22:00", "03:00"]], "tue": [["02:00", "05:00"]]})
    with pytest.raises(DomainError, match="Sunday 23:00-01:00 overlaps Monday 00:30-02:00"):
        weekly_clean({"sun": [["23:00", "01:00"]], "mon": [["00:30", "02:00"]]})
    with pytest.raises(DomainError, match="at most"):
        weekly_clean({"mon": [[f"{h:02d}:00", f"{h:02d}:30"] for h in range(MAX_RANGES_PER_DAY + 1)]})
    with pytest.raises(DomainError, match="not a time"):
        weekly_clean({"mon": [["25:00", "26:00"]]})
    with pytest.raises(DomainError, match="Unknown day"):
        weekly_clean({"funday": []})
    with pytest.raises(DomainError):
        weekly_clean(["09:00"])
    assert weekly_clean({"mon": [["13:00", "17:30"], ["9:00", "12:00"]]})["mon"] == [
        ["09:00", "12:00"],
        ["13:00", "17:30"],
    ]
    assert weekly_clean({"fri": [["00:00", "24:00"]]})["fri"] == [["00:00", "00:00"]]  # the whole day


def test_the_page_text_of_a_day_and_of_closed_dates_is_parsed_with_readable_errors() -> None:
    assert day_ranges_parse(day="mon", text="09:00-12:00, 13:00 \u2013 17:30") == [
        ("09:00", "12:00"),
        ("13:00", "17:30"),
    ]
    assert day_ranges_parse(day="mon", text="  ") == []
    with pytest.raises(DomainError, match="Monday: '9' is not a time"):
        day_ranges_parse(day="mon", text="9-5")
    with pytest.raises(DomainError, match="not a range"):
        day_ranges_parse(day="tue", text="09:00")
    assert closed_dates_parse(text="2026-12-25\n2026-01-01, 2026-12-25") == ["2026-01-01", "2026-12-25"]
    with pytest.raises(DomainError, match="not a date"):
        closed_dates_parse(text="2026-02-30")
    with pytest.raises(DomainError, match="at most"):
        closed_dates_parse(text="\n".join(["2026-01-01"] * (MAX_CLOSED_DATES + 1)))


def test_the_service_refuses_a_bad_zone_and_hours_that_are_never_open(personas: Personas) -> None:
    bot = personas.chatbot
    for zone in ("Mars/Olympus", "../../etc/passwd", "", "x" * 1000, "EST5EDT,M3.2.0,M11.1.0"):
        with pytest.raises(DomainError) as error:
            chatbot_update_handoff_options(chatbot=bot, options=HandoffOptions(offline_message="x", timezone=zone))
        assert error.value.code == "invalid_timezone"
    with pytest.raises(DomainError) as error:
        options = HandoffOptions(offline_message="x", office_hours_enabled=True, weekly={})
        chatbot_update_handoff_options(chatbot=bot, options=options)
    assert error.value.code == "invalid_office_hours"
    with pytest.raises(DomainError) as error:
        chatbot_update_handoff_options(chatbot=bot, options=HandoffOptions(offline_message="x", idle_minutes=0))
    assert error.value.code == "invalid_idle_minutes"
    bot.refresh_from_db()
    assert bot.office_hours_timezone == "UTC" and bot.office_hours_enabled is False


def test_a_hand_edited_row_never_breaks_a_request(personas: Personas) -> None:
    bot = personas.chatbot
    Chatbot.objects.filter(pk=bot.pk).update(
        office_hours_enabled=True,
        office_hours_timezone="Nowhere/Else",
        office_hours={"mon": [["09:00"], "x", ["09:00", "17:00"]], "tue": "junk"},
        office_closed_dates=["not a date", 7],
    )
    bot.refresh_from_db()
    # Unknown zone: read as UTC; broken ranges skipped, the valid one kept.
    assert _open(bot, "2026-03-30T10:00") and not _open(bot, "2026-03-31T10:00")
