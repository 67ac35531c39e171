"""Chatbot → Settings: office hours, the offline message, skip-the-wait, hiding the button, idle
minutes and routing — saved from the page, and every bad or hostile value refused with a readable
message on the page (never a 500), nothing saved."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from chatbots.models import Chatbot
from tests.factories import Personas, chatbot_admin_form, handoff_settings_form

pytestmark = pytest.mark.django_db

URL = "/dashboard/settings/"


def test_the_page_shows_the_new_fields(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    page = client.get(URL).content.decode()
    for label in (
        "Office hours",
        "Use office hours",
        "Time zone",
        "Monday",
        "Sunday",
        "Closed dates",
        "Offline message",
        "Don&#x27;t make visitors wait when nobody is online",
        "Hide “Talk to a human” outside office hours",
        "Resolve a silent live chat after (minutes)",
        "Routing",
        "Round robin",
        'value="Europe/Paris"',
    ):
        assert label in page, label
    assert 'type="checkbox" name="handoff_skip_wait_when_offline"' in page


def test_office_hours_and_the_options_save_from_the_page(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    response = client.post(
        URL,
        handoff_settings_form(
            office_hours_enabled="on",
            office_hours_timezone="Europe/Paris",
            hours_mon="09:00-12:00, 13:00-17:30",
            hours_fri="9:00 - 17:00",
            hours_sat="22:00-02:00",
            office_closed_dates="2026-12-25\n2026-01-01",
            hide_handoff_outside_hours="on",
            handoff_skip_wait_when_offline="",
            handoff_offline_message="Back on Monday.",
            handoff_idle_minutes="45",
            handoff_routing="round_robin",
        ),
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    bot = Chatbot.objects.get(pk=personas.chatbot.pk)
    assert bot.office_hours_enabled and bot.office_hours_timezone == "Europe/Paris"
    assert bot.office_hours["mon"] == [["09:00", "12:00"], ["13:00", "17:30"]]
    assert bot.office_hours["fri"] == [["09:00", "17:00"]] and bot.office_hours["sat"] == [["22:00", "02:00"]]
    assert bot.office_hours["sun"] == []
    assert bot.office_closed_dates == ["2026-01-01", "2026-12-25"]
    assert bot.hide_handoff_outside_hours and not bot.handoff_skip_wait_when_offline
    assert bot.handoff_offline_message == "Back on Monday."
    assert bot.handoff_idle_minutes == 45 and bot.handoff_routing == "round_robin"
    page = client.get(URL).content.decode()
    assert 'value="09:00-12:00, 13:00-17:30"' in page and "2026-01-01\n2026-12-25" in page
    # Emptying the idle minutes goes back to the platform default.
    assert client.post(URL, handoff_settings_form(handoff_idle_minutes="")).status_code == 302
    assert Chatbot.objects.get(pk=bot.pk).handoff_idle_minutes is None


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"office_hours_timezone": "Mars/Olympus"}, "Choose a time zone from the list"),
        ({"office_hours_timezone": "../../etc/passwd"}, "Choose a time zone from the list"),
        ({"office_hours_timezone": "x" * 100_000}, "Choose a time zone from the list"),
        ({"hours_mon": "9am-5pm"}, "Monday: &#x27;9am&#x27; is not a time"),
        ({"hours_tue": "25:00-26:00"}, "Tuesday: &#x27;25:00&#x27; is not a time"),
        ({"hours_wed": "09:00"}, "is not a range"),
        ({"hours_thu": "09:00-12:00, 11:00-14:00"}, "Thursday 09:00-12:00 overlaps Thursday 11:00-14:00"),
        ({"hours_mon": "22:00-03:00", "hours_tue": "02:00-05:00"}, "Monday 22:00-03:00 overlaps Tuesday 02:00-05:00"),
        ({"hours_fri": ", ".join(f"{h:02d}:00-{h:02d}:30" for h in range(7))}, "at most 6 ranges"),
        ({"hours_sat": "9" * 5000}, "at most 200 characters"),
        ({"office_closed_dates": "2026-02-30"}, "is not a date"),
        ({"office_closed_dates": "Christmas"}, "is not a date"),
        ({"office_closed_dates": "\n".join(["2026-01-01"] * 400)}, "at most 4000 characters"),
        ({"office_hours_enabled": "on"}, "no day has hours"),
        ({"handoff_offline_message": ""}, "This field is required"),
        ({"handoff_offline_message": "x" * 501}, "at most 500 characters"),
        ({"handoff_idle_minutes": "0"}, "greater than or equal to 1"),
        ({"handoff_idle_minutes": "99999999999999999999"}, "less than or equal to"),
        ({"handoff_routing": "chaos"}, "Choose first claim or round robin"),
    ],
)
def test_bad_values_get_a_readable_error_and_nothing_is_saved(
    client: Client, personas: Personas, overrides: dict[str, str], message: str
) -> None:
    client.force_login(personas.owner)
    response = client.post(URL, handoff_settings_form(chatbot=str(personas.chatbot.pk), **overrides))
    assert response.status_code == 200
    page = response.content.decode()
    assert message in page, page[page.find("form-error") - 200 : page.find("form-error") + 600]
    assert 'role="alert"' in page
    bot = Chatbot.objects.get(pk=personas.chatbot.pk)
    assert bot.office_hours_enabled is False and bot.office_hours == {} and bot.handoff_enabled is False


def test_an_agent_cannot_change_the_hours(client: Client, personas: Personas) -> None:
    client.force_login(personas.teammate)
    client.post(URL, handoff_settings_form(office_hours_enabled="on", hours_mon="09:00-17:00"))
    assert Chatbot.objects.get(pk=personas.chatbot.pk).office_hours_enabled is False


def test_the_staff_admin_checks_office_hours_like_the_dashboard(client: Client, personas: Personas, staff_user) -> None:
    client.force_login(staff_user)
    bot = personas.chatbot
    url = reverse("admin:chatbots_chatbot_change", args=[bot.pk])
    bad = {
        "office_hours": '{"mon": [["09:00", "12:00"], ["11:00", "14:00"]]}',
        "office_hours_timezone": "Mars/Olympus",
        "office_closed_dates": '["Christmas"]',
    }
    response = client.post(url, chatbot_admin_form(bot, **bad))
    assert response.status_code == 200
    page = response.content.decode()
    assert "Monday 09:00-12:00 overlaps Monday 11:00-14:00" in page
    assert "Unknown time zone" in page and "is not a date" in page
    good = {
        "office_hours": '{"mon": [["9:00", "17:00"]]}',
        "office_hours_timezone": "Asia/Tokyo",
        "office_closed_dates": '["2026-12-25"]',
        "office_hours_enabled": "on",
    }
    assert client.post(url, chatbot_admin_form(bot, **good)).status_code == 302
    bot.refresh_from_db()
    assert bot.office_hours["mon"] == [["09:00", "17:00"]] and bot.office_hours_timezone == "Asia/Tokyo"
