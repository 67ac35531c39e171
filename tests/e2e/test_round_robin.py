"""Round robin on the real stack: with two agents online, a new handoff is offered to the one with
fewer live chats, who is told live in the console and accepts; the visitor sees them join."""

from __future__ import annotations

import time
from collections.abc import Callable

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, Page, expect

from chatbots.demo import demo_seed
from chatbots.models import Chatbot
from chatbots.presence import online_agent_ids
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from handoff.transitions.request import handoff_request
from pivra.stack import AppProcesses
from tests.e2e.console_helpers import PASSWORD, handoff_queue, row, seeded_visitor, shot
from tests.e2e.widget_helpers import off_thread, open_widget
from tests.handoff_helpers import enable_handoff


def _wait_until(condition: Callable[[], bool], seconds: float = 15) -> None:
    """Both consoles' sockets have registered their presence (a wait, not a timing assertion)."""
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            pytest.fail("the agents' consoles never showed them online")
        time.sleep(0.1)


def _seed() -> Chatbot:
    demo_seed(password=PASSWORD)
    bot = Chatbot.objects.get(workspace__slug="demo", name="Demo bot")
    bot = enable_handoff(bot, keywords=bot.handoff_keywords, timeout=3600)
    Chatbot.objects.filter(pk=bot.pk).update(handoff_routing=Chatbot.Routing.ROUND_ROBIN)
    bob = User.objects.get(username="bob")
    _, conversation = seeded_visitor(bot, page="https://northwind.example/")
    key = str(conversation.public_id)
    handoff_request(visitor=conversation.visitor, conversation_public_id=key, trigger="button")
    handoff_claim(agent=bob, conversation_public_id=key)  # Bob already has a live chat
    return bot


def test_a_new_handoff_is_offered_to_the_agent_with_fewer_chats_who_accepts(
    page: Page, browser: Browser, live_stack: AppProcesses
) -> None:
    bot = off_thread(_seed)
    alice, bob = User.objects.get(username="alice"), User.objects.get(username="bob")
    contexts = [
        browser.new_context(base_url=live_stack.http_url, viewport={"width": 1280, "height": 800}) for _ in range(2)
    ]
    for context in contexts:
        context.set_default_timeout(15_000)
    try:
        alice_page = handoff_queue(contexts[0], "alice")
        bob_page = handoff_queue(contexts[1], "bob")
        _wait_until(lambda: {alice.pk, bob.pk} <= online_agent_ids(workspace_id=bot.workspace_id))

        frame = open_widget(page)
        frame.get_by_role("button", name="Talk to a human").click()
        expect(frame.locator("body")).to_have_attribute("data-state", "pending")

        notice = alice_page.get_by_role("alertdialog", name="Conversation offered to you")
        expect(notice).to_contain_text("round robin")
        expect(bob_page.locator("[data-offer]")).to_have_count(0)
        handoff = Handoff.objects.get(status=Handoff.Status.PENDING)
        assert handoff.offered_to_id == alice.pk and handoff.offer_kind == "route"
        assert handoff.routing_tried == [alice.pk]
        # Still in line for everyone's Handoff tab (a round-robin offer is how the line is served).
        waiting_row = row(alice_page, str(handoff.conversation.public_id))
        expect(waiting_row.locator("[data-queue-position]")).to_have_text("Next in line")
        shot(alice_page, "round-robin-offer")

        notice.get_by_role("button", name="Accept").click()
        expect(frame.locator("body")).to_have_attribute("data-state", "active")
        handoff.refresh_from_db()
        assert handoff.status == "active" and handoff.claimed_by_id == alice.pk
    finally:
        for context in contexts:
            context.close()
