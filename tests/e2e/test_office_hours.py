"""Skip the wait in the real widget: after hours, and with no agent online, "Talk to a human" goes
straight to the offline message and the mobile-number form — no spinner, no pending state at any
moment — and the owner's "hide outside hours" removes the button."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from playwright.sync_api import FrameLocator, Page, expect

from chatbots.handoff_options import HandoffOptions, chatbot_update_handoff_options
from chatbots.models import Chatbot
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from tests.e2e.conftest import screenshot
from tests.e2e.widget_helpers import DEMO_PASSWORD, off_thread, open_widget, seed_demo, send

OFFLINE = "We're closed right now. Leave your mobile number and we'll call you back."
# Records every state the widget's body takes and whether a spinner was ever in the page.
WATCH = """body => {
  window.__states = [body.dataset.state];
  window.__spinner = Boolean(document.querySelector('.pv-spinner'));
  new MutationObserver(() => {
    window.__states.push(body.dataset.state);
    if (document.querySelector('.pv-spinner')) window.__spinner = true;
  }).observe(body, {attributes: true, childList: true, subtree: true});
}"""


def _options(bot: Chatbot, **changes: Any) -> Chatbot:
    options = dataclasses.replace(HandoffOptions.of(bot), offline_message=OFFLINE, **changes)
    return chatbot_update_handoff_options(chatbot=bot, options=options)


def _closed_now(bot: Chatbot, **changes: Any) -> Chatbot:
    """Open every day, but yesterday, today and tomorrow are closed dates: outside hours now."""
    today = datetime.now(UTC).date()
    closed = [(today + timedelta(days=d)).isoformat() for d in (-1, 0, 1)]
    weekly = {day: [["08:00", "20:00"]] for day in ("mon", "tue", "wed", "thu", "fri", "sat", "sun")}
    return _options(
        bot, office_hours_enabled=True, timezone="Europe/Paris", weekly=weekly, closed_dates=closed, **changes
    )


def _ask_and_see_the_offline_card_at_once(page: Page, frame: FrameLocator, *, shot: str) -> None:
    body = frame.locator("body")
    send(frame, "Hello?")
    expect(frame.get_by_role("log", name="Conversation").locator(".pv-row.pv-ai[data-seq]")).to_have_count(1)
    body.evaluate(WATCH)
    frame.get_by_role("button", name="Talk to a human").click()
    expect(body).to_have_attribute("data-state", "busy")
    expect(frame.get_by_text(OFFLINE)).to_be_visible()
    expect(frame.get_by_label("Mobile number")).to_be_visible()
    expect(frame.locator(".pv-spinner")).to_have_count(0)
    screenshot(page, shot)
    assert "pending" not in body.evaluate("() => window.__states")
    assert body.evaluate("() => window.__spinner") is False

    frame.get_by_label("Mobile number").fill("+44 7911 123456")
    frame.get_by_role("button", name="Send").click()
    expect(frame.get_by_text("+447911123456")).to_be_visible()


def test_after_hours_the_request_shows_the_offline_message_and_phone_capture_at_once(page: Page) -> None:
    bot = _closed_now(seed_demo(), hide_outside_hours=True)
    frame = open_widget(page)
    expect(frame.get_by_role("textbox", name="Message")).to_be_editable()
    expect(frame.get_by_role("button", name="Talk to a human")).to_have_count(0)  # hidden by the owner
    screenshot(page, "office-hours-button-hidden")

    _options(bot, hide_outside_hours=False)
    page.reload()
    frame = open_widget(page)
    _ask_and_see_the_offline_card_at_once(page, frame, shot="office-hours-after-hours")
    handoff = Handoff.objects.get()
    assert handoff.status == "busy" and handoff.busy_reason == "after_hours"
    expect(frame.get_by_role("log", name="Conversation")).to_contain_text("The team is outside office hours")

    # Recorded: a late claim still brings the agent to the visitor.
    alice = User.objects.get(username="alice")
    off_thread(handoff_claim, agent=alice, conversation_public_id=str(handoff.conversation.public_id))
    expect(frame.locator("body")).to_have_attribute("data-state", "active")
    expect(frame.get_by_text("● Live Agent")).to_be_visible()


def test_with_no_agent_online_the_request_skips_the_wait(page: Page) -> None:
    _options(seed_demo(), skip_wait_when_offline=True)  # the product default; no console is open
    frame = open_widget(page)
    _ask_and_see_the_offline_card_at_once(page, frame, shot="office-hours-nobody-online")
    handoff = Handoff.objects.get()
    assert handoff.status == "busy" and handoff.busy_reason == "offline"
    expect(frame.get_by_role("log", name="Conversation")).to_contain_text("No team member is online right now")


def test_the_owner_sets_office_hours_on_the_settings_page(page: Page) -> None:
    seed_demo()
    page.goto("/accounts/login/?next=/dashboard/settings/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(DEMO_PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("group", name="Office hours")).to_be_visible()
    page.get_by_label("Use office hours").check()
    page.get_by_label("Time zone").select_option("Europe/Paris")
    page.get_by_label("Monday").fill("09:00-12:00, 11:30-17:00")
    page.get_by_label("Closed dates").fill("2026-12-25\n2026-13-01")
    page.get_by_role("button", name="Save settings").first.click()
    expect(page.get_by_text("Monday 09:00-12:00 overlaps Monday 11:30-17:00")).to_have_count(2)  # top and days
    expect(page.get_by_text("'2026-13-01' is not a date")).to_be_visible()
    screenshot(page, "office-hours-settings-errors")

    page.get_by_label("Monday").fill("09:00-12:00, 13:00-17:30")
    page.get_by_label("Friday").fill("22:00-02:00")
    page.get_by_label("Closed dates").fill("2026-12-25")
    page.get_by_label("Hide “Talk to a human” outside office hours").check()
    # The handoff section's field (the per-language texts below have an "Offline message" too).
    page.locator("#handoff").get_by_label("Offline message").fill("Back Monday at 9.")
    page.get_by_role("button", name="Save settings").first.click()
    expect(page.get_by_text("Human handoff settings saved.")).to_be_visible()
    expect(page.get_by_label("Monday")).to_have_value("09:00-12:00, 13:00-17:30")
    page.get_by_role("group", name="Office hours").scroll_into_view_if_needed()
    screenshot(page, "office-hours-settings")
    bot = Chatbot.objects.get(workspace__slug="demo", name="Demo bot")
    assert bot.office_hours["mon"] == [["09:00", "12:00"], ["13:00", "17:30"]]
    assert bot.office_hours["fri"] == [["22:00", "02:00"]] and bot.office_closed_dates == ["2026-12-25"]
    assert bot.hide_handoff_outside_hours and bot.handoff_offline_message == "Back Monday at 9."
