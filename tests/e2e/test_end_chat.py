"""Issue 16 review, item 2 in Chromium: the visitor ends a chat with the AI ("End chat"), rates it
on the resolved screen, and the Analytics page counts the rating under "AI only"."""

from __future__ import annotations

from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect

from chatbots.models import Chatbot
from conversations.models import Conversation
from tests.e2e.conftest import screenshot
from tests.e2e.console_helpers import login
from tests.e2e.widget_helpers import DEMO_PASSWORD, open_widget, seed_demo, send

LIVE = 10_000


def test_the_visitor_ends_an_ai_chat_and_rates_it(page: Page, second_context: BrowserContext) -> None:
    bot = seed_demo()
    Chatbot.objects.filter(pk=bot.pk).update(satisfaction_survey="five")
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    User.objects.filter(username="alice").update(first_name="Alice")

    frame = open_widget(page)
    body = frame.locator("body")
    end = frame.get_by_role("button", name="End chat")
    expect(end).to_be_hidden()  # nothing to end before the visitor wrote
    send(frame, "Do you ship tents to Norway?")
    log = frame.get_by_role("log", name="Conversation")
    expect(log.locator(".pv-row.pv-ai[data-seq]")).to_have_count(1, timeout=LIVE)
    expect(end).to_be_visible()
    screenshot(page, "issue16-end-chat-ai")
    end.click()

    expect(body).to_have_attribute("data-state", "resolved", timeout=LIVE)
    expect(log).to_contain_text("You ended the chat")
    expect(frame.get_by_role("button", name="Start new conversation")).to_be_visible()
    expect(frame.get_by_role("button", name="Email me the transcript")).to_be_visible()
    survey = frame.get_by_role("region", name="How did we do?")
    survey.get_by_role("button", name="5 stars").click()
    survey.get_by_role("button", name="Send feedback").click()
    expect(frame.get_by_text("Thanks for your feedback!")).to_be_visible()
    screenshot(page, "issue16-end-chat-rated")
    stored = Conversation.objects.filter(chatbot=bot).latest("created_at")
    assert (stored.status, stored.rating) == ("closed", 5)

    alice = login(second_context, "alice", errors, password=DEMO_PASSWORD)
    alice.goto("/dashboard/analytics/")
    ai_only = alice.locator('[data-satisfaction="ai_only"]')
    expect(ai_only.locator('[data-cell="rated"]')).to_have_text("1")
    expect(ai_only.locator('[data-cell="average"]')).to_have_text("5.0")
    expect(alice.locator('[data-satisfaction="person"] [data-cell="rated"]')).to_have_text("0")
    assert errors == []
