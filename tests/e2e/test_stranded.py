"""Nobody stranded, in the real stack: an agent removed from the workspace while live puts the visitor
back in the queue within 5 s (the widget waits again, the Handoff tab and its badge count the chat),
and a live chat silent past the chatbot's idle limit is resolved by the beat sweep, after which the
visitor starts anew. Screenshots go to test-artifacts/stranded-*.png and idle-*.png."""

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import Browser, BrowserContext, FrameLocator, Page, expect

from chatbots.models import Chatbot, Membership
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from pivra.stack import AppProcesses
from tests.e2e.conftest import screenshot
from tests.e2e.console_helpers import LIVE, login, tab, visitor_context
from tests.e2e.widget_helpers import DEMO_PASSWORD, off_thread, open_widget, seed_demo, send


@pytest.fixture
def visitor(browser: Browser, live_stack: AppProcesses, transactional_db: None) -> Iterator[BrowserContext]:
    ctx = visitor_context(browser, live_stack.http_url)
    yield ctx
    ctx.close()


def _login(context: BrowserContext, username: str, errors: list[str]) -> Page:
    return login(context, username, errors, password=DEMO_PASSWORD)


def _visitor_waits(visitor: BrowserContext) -> tuple[Page, FrameLocator, str]:
    site = visitor.new_page()
    frame = open_widget(site)
    send(frame, "Hi, my parcel never arrived")
    expect(frame.get_by_role("log", name="Conversation").locator(".pv-row.pv-ai[data-seq]")).to_have_count(1)
    frame.get_by_role("button", name="Talk to a human").click()
    expect(frame.locator("body")).to_have_attribute("data-state", "pending")
    return site, frame, str(Handoff.objects.latest("requested_at").conversation.public_id)


def _remove_member(username: str) -> int:
    """As the admin's delete view does it: the model's delete, in a transaction."""
    with transaction.atomic():
        return Membership.objects.filter(user__username=username, workspace__slug="demo").delete()[0]


def test_an_agent_removed_while_live_puts_the_visitor_back_in_the_queue_within_5_s(
    second_context: BrowserContext, visitor: BrowserContext
) -> None:
    seed_demo()
    errors: list[str] = []
    bob = _login(second_context, "bob", errors)
    tab(bob, "Handoff").click()
    site, frame, conversation = _visitor_waits(visitor)
    body = frame.locator("body")
    off_thread(handoff_claim, agent=User.objects.get(username="alice"), conversation_public_id=conversation)
    expect(body).to_have_attribute("data-state", "active")
    expect(frame.get_by_text("● Live Agent")).to_be_visible()
    badge = bob.locator("[data-unclaimed-badge]").first
    expect(badge).to_be_hidden(timeout=LIVE)
    screenshot(site, "stranded-widget-live")

    removed_at = time.monotonic()
    assert off_thread(_remove_member, username="alice") >= 1
    # The acceptance's one timed assertion: waiting again within 5 s of the removal.
    expect(body).to_have_attribute("data-state", "pending", timeout=5_000)
    waited = time.monotonic() - removed_at
    assert waited < 5.0, waited
    expect(frame.get_by_text("Waiting for a team member…", exact=True)).to_be_visible()
    expect(frame.get_by_role("log", name="Conversation")).to_contain_text("Alice left the conversation")
    expect(frame.get_by_text("● Live Agent")).to_be_hidden()

    expect(badge).to_have_text("1", timeout=LIVE)
    row = bob.locator(f'[data-conversation="{conversation}"]')
    expect(row).to_contain_text("Waiting", timeout=LIVE)
    screenshot(site, "stranded-widget-waiting-again")
    screenshot(bob, "stranded-handoff-tab")
    handoff = Handoff.objects.get(conversation__public_id=conversation)
    assert (handoff.status, handoff.claimed_by_id) == ("pending", None)
    last = handoff.conversation.events.order_by("-seq").first()
    assert last is not None and last.kind == "handoff.released" and last.data["reason"] == "member_removed"

    # Bob claims it: the visitor is with a team member again.
    bob.goto(f"/dashboard/conversations/{conversation}/")
    bob.get_by_role("button", name="Claim").click()
    expect(body).to_have_attribute("data-state", "active", timeout=LIVE)
    expect(frame.get_by_text("Bob from the team")).to_be_visible(timeout=LIVE)
    assert errors == []
    print(f"stranded: widget waiting again {waited:.2f} s after the removal committed")


def test_an_idle_live_chat_is_resolved_and_the_visitor_starts_anew(visitor: BrowserContext) -> None:
    bot = seed_demo()
    Chatbot.objects.filter(pk=bot.pk).update(handoff_idle_minutes=1)
    site, frame, conversation = _visitor_waits(visitor)
    body = frame.locator("body")
    off_thread(handoff_claim, agent=User.objects.get(username="alice"), conversation_public_id=conversation)
    expect(body).to_have_attribute("data-state", "active")
    send(frame, "Hello? Are you there?")
    log = frame.get_by_role("log", name="Conversation")
    # Stored (a seq from the server), not only shown as sent.
    expect(log.locator(".pv-row[data-seq]", has_text="Hello? Are you there?")).to_have_count(1)
    handoff = Handoff.objects.get(conversation__public_id=conversation)
    assert handoff.last_message_at is not None  # the visitor's message restarted the idle clock
    screenshot(site, "idle-widget-live")

    # Two minutes of silence, as if they had passed: the beat sweep resolves it on its next run.
    ago = timezone.now() - timedelta(minutes=2)
    Handoff.objects.filter(pk=handoff.pk).update(last_message_at=ago, claimed_at=ago)
    expect(body).to_have_attribute("data-state", "resolved", timeout=3 * LIVE)
    expect(log).to_contain_text("The conversation was closed after a while without messages")
    screenshot(site, "idle-widget-resolved")
    handoff.refresh_from_db()
    assert (handoff.status, handoff.resolve_reason) == ("resolved", "idle")

    frame.get_by_role("button", name="Start new conversation").click()
    expect(body).to_have_attribute("data-state", "ai")
    send(frame, "What is your return policy?")
    expect(log).to_contain_text("60 days")
    screenshot(site, "idle-widget-new-conversation")
