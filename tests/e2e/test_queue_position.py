"""Queue position in the real widget and console: two visitors wait, the second is number 2 in line;
an agent claims the first and the second's widget says "You are next in line" live, as the Handoff
tab does. Past the numbered places a visitor sees "50+ people are ahead of you" and gets a number
live once someone ahead leaves (the announcement runs as a Celery task on the real workers)."""

from __future__ import annotations

from datetime import timedelta

from django.contrib.auth.models import User
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, FrameLocator, Page, expect

from chatbots.demo import demo_seed
from chatbots.models import Chatbot
from handoff.models import Handoff
from handoff.queue_position import NUMBERED
from handoff.transitions.claim import handoff_claim
from handoff.transitions.request import handoff_request
from handoff.transitions.resolve import handoff_resolve
from pivra.stack import AppProcesses
from tests.e2e.console_helpers import PASSWORD, handoff_queue, row, seeded_visitor, shot
from tests.e2e.widget_helpers import off_thread, open_widget
from tests.handoff_helpers import enable_handoff, wait_for_agents

CLAIM_WAITS = [60, 70, 80, 90, 100]  # median 80 s: "usually under 2 minutes"


def _seed() -> Chatbot:
    demo_seed(password=PASSWORD)
    bot = Chatbot.objects.get(workspace__slug="demo", name="Demo bot")
    bot = wait_for_agents(enable_handoff(bot, keywords=bot.handoff_keywords, timeout=3600))
    alice = User.objects.get(username="alice")
    asked = timezone.now() - timedelta(hours=2)
    for wait in CLAIM_WAITS:  # recent claims, so the estimate has history
        _, conversation = seeded_visitor(bot, page="https://northwind.example/")
        key = str(conversation.public_id)
        with transaction.atomic():
            handoff_request(visitor=conversation.visitor, conversation_public_id=key, trigger="button", now=asked)
            handoff_claim(agent=alice, conversation_public_id=key, now=asked + timedelta(seconds=wait))
    cache.delete(f"queue-wait:{bot.workspace_id}")  # the requests above cached "too little history"
    return bot


def _ask_for_a_person(page: Page) -> FrameLocator:
    frame = open_widget(page)
    frame.get_by_role("button", name="Talk to a human").click()
    expect(frame.locator("body")).to_have_attribute("data-state", "pending")
    return frame


def test_the_second_visitor_moves_to_next_in_line_when_the_first_is_claimed(
    page: Page, second_context: BrowserContext, browser: Browser, live_stack: AppProcesses
) -> None:
    off_thread(_seed)
    first = _ask_for_a_person(page)
    expect(first.locator(".pv-queue")).to_have_text("You are next in line · usually under 2 minutes")
    second_page = second_context.new_page()
    second = _ask_for_a_person(second_page)
    queue_line = second.locator(".pv-queue")
    expect(queue_line).to_have_text("You are number 2 in line · usually under 2 minutes")
    expect(queue_line).to_have_attribute("data-position", "2")
    shot(second_page, "queue-position-widget-2")

    waiting = list(
        Handoff.objects.filter(status=Handoff.Status.PENDING)
        .order_by("requested_at", "pk")
        .values_list("conversation__public_id", flat=True)
    )
    assert len(waiting) == 2
    first_id, second_id = (str(c) for c in waiting)

    agent_context = browser.new_context(base_url=live_stack.http_url, viewport={"width": 1280, "height": 800})
    agent_context.set_default_timeout(15_000)
    try:
        console = handoff_queue(agent_context, "bob")
        expect(row(console, first_id).locator("[data-queue-position]")).to_have_text("Next in line")
        expect(row(console, second_id).locator("[data-queue-position]")).to_have_text("#2 in line")
        shot(console, "queue-position-console-before")

        alice = User.objects.get(username="alice")
        off_thread(handoff_claim, agent=alice, conversation_public_id=first_id)

        # Live, with no reload: the second visitor is next; the first is with Alice.
        expect(queue_line).to_have_text("You are next in line · usually under 2 minutes")
        expect(queue_line).to_have_attribute("data-position", "1")
        expect(first.locator("body")).to_have_attribute("data-state", "active")
        expect(first.locator(".pv-queue")).to_have_count(0)
        shot(second_page, "queue-position-widget-next")
        expect(row(console, second_id).locator("[data-queue-position]")).to_have_text("Next in line")
        expect(row(console, first_id).locator("[data-queue-position]")).to_have_count(0)
        shot(console, "queue-position-console-after")

        # A reload shows the same place (the state snapshot carries it).
        second_page.reload()
        second_page.get_by_role("button", name="Open chat").click()
        reloaded = second_page.frame_locator("iframe[title='Chat']")
        expect(reloaded.locator(".pv-queue")).to_have_text("You are next in line · usually under 2 minutes")
    finally:
        agent_context.close()


def _seed_a_full_line() -> list[str]:
    """The demo with history, and NUMBERED visitors already waiting (asked ten minutes ago)."""
    bot = _seed()
    asked = timezone.now() - timedelta(minutes=10)
    waiting = []
    for n in range(NUMBERED):
        _, conversation = seeded_visitor(bot, page="https://northwind.example/")
        key = str(conversation.public_id)
        handoff_request(
            visitor=conversation.visitor, conversation_public_id=key, trigger="button", now=asked + timedelta(seconds=n)
        )
        waiting.append(key)
    return waiting


def test_a_visitor_past_the_numbered_places_gets_a_number_live_when_someone_ahead_leaves(
    page: Page, live_stack: AppProcesses
) -> None:
    waiting = off_thread(_seed_a_full_line)
    frame = _ask_for_a_person(page)
    queue_line = frame.locator(".pv-queue")
    expect(queue_line).to_have_text(f"{NUMBERED}+ people are ahead of you")
    expect(queue_line).to_have_attribute("data-position", "over")
    shot(page, "queue-position-widget-over")

    alice = User.objects.get(username="alice")
    off_thread(handoff_resolve, agent=alice, conversation_public_id=waiting[0])
    expect(queue_line).to_have_text(f"You are number {NUMBERED} in line · usually under 2 minutes")
    expect(queue_line).to_have_attribute("data-position", str(NUMBERED))
