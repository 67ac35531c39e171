"""Issue 17 in Chromium: an agent whose console language is Arabic gets the console right-to-left —
``<html lang="ar" dir="rtl">``, the sidebar on the right, a conversation's details panel on the left
and the visitor's bubbles on the right — with phone numbers and times still reading left-to-right.
Screenshots: test-artifacts/console-rtl-ar.png (the list) and console-rtl-ar-conversation.png."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, FloatRect, Page, expect

from accounts.models import AgentProfile
from chatbots.models import Chatbot
from conversations.models import Conversation
from pivra.stack import AppProcesses
from tests.e2e.console_helpers import PASSWORD, seed, shot
from tests.e2e.widget_helpers import off_thread


def _arabic_agent(username: str) -> None:
    user = User.objects.get(username=username)
    AgentProfile.objects.update_or_create(user=user, defaults={"language": "ar"})


def _login(context: BrowserContext, username: str, errors: list[str]) -> Page:
    """The login page follows the browser (en-US); the console then follows the agent's profile."""
    page = context.new_page()
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto("/accounts/login/?next=/dashboard/conversations/")
    page.locator("#id_username").fill(username)
    page.locator("#id_password").fill(PASSWORD)
    page.locator('form button[type="submit"]').click()
    expect(page).to_have_url(re.compile(r"/dashboard/conversations/$"))
    return page


def _box(page: Page, selector: str) -> FloatRect:
    box = page.locator(selector).first.bounding_box()
    assert box is not None, selector
    return box


def test_the_console_in_arabic_is_laid_out_right_to_left(context: BrowserContext, live_stack: AppProcesses) -> None:
    bot: Chatbot = seed()
    off_thread(lambda: _arabic_agent("alice"))
    errors: list[str] = []
    page = _login(context, "alice", errors)

    html = page.locator("html")
    expect(html).to_have_attribute("lang", "ar")
    expect(html).to_have_attribute("dir", "rtl")
    width = page.viewport_size["width"] if page.viewport_size else 1280
    sidebar, content = _box(page, "aside.sidebar"), _box(page, "main.content")
    assert sidebar["x"] + sidebar["width"] >= width - 2, sidebar  # flush with the right edge
    assert sidebar["x"] > content["x"], (sidebar, content)
    expect(page.locator("[data-conversation-list] [data-conversation]").first).to_be_visible()
    shot(page, "console-rtl-ar")

    conversation = off_thread(
        lambda: (
            Conversation.objects.filter(chatbot=bot, events__author="visitor")
            .distinct()
            .order_by("-created_at")
            .first()
        )
    )
    assert conversation is not None
    page.goto(f"/dashboard/conversations/{conversation.public_id}/")
    expect(html).to_have_attribute("dir", "rtl")
    main, side = _box(page, ".conv-main"), _box(page, ".conv-side")
    assert side["x"] < main["x"], (side, main)  # the details panel at the end side: the left
    thread = _box(page, "[data-thread]")
    bubble = _box(page, ".ev-visitor .ev-bubble")
    # The visitor's bubbles start at the right (mirrored), the agent's at the left.
    assert bubble["x"] + bubble["width"] > thread["x"] + thread["width"] * 0.6, (bubble, thread)
    phone = page.locator('[data-field="phone"] a[href^="tel:"]')
    if phone.count():
        expect(phone).to_have_attribute("dir", "ltr")
    assert page.locator("[data-thread] time").first.evaluate("t => getComputedStyle(t).unicodeBidi") == "isolate"
    shot(page, "console-rtl-ar-conversation")
    assert errors == []
