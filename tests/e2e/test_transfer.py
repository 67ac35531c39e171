"""Transfer, release and take-over in the real stack: agents in the console, the visitor in the real
widget, each in their own browser profile. Screenshots go to test-artifacts/transfer-*.png."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Browser, BrowserContext, FrameLocator, Page, expect

from chatbots.models import Membership
from handoff.models import Handoff
from pivra.stack import AppProcesses
from tests.e2e.conftest import screenshot
from tests.e2e.console_helpers import LIVE, login, tab, visitor_context
from tests.e2e.widget_helpers import DEMO_PASSWORD, open_widget, seed_demo, send


@pytest.fixture
def visitor(browser: Browser, live_stack: AppProcesses, transactional_db: None) -> Iterator[BrowserContext]:
    ctx = visitor_context(browser, live_stack.http_url)
    yield ctx
    ctx.close()


def _login(context: BrowserContext, username: str, errors: list[str]) -> Page:
    return login(context, username, errors, password=DEMO_PASSWORD)


def _make_owner(username: str) -> None:
    """The demo's agents are plain agents (and Starter has room for no fourth member): make one an owner."""
    Membership.objects.filter(user__username=username, workspace__slug="demo").update(role=Membership.Role.OWNER)


def _visitor_waits(visitor: BrowserContext) -> tuple[Page, FrameLocator, str]:
    """A visitor in the real widget asks for a person; (their page, their widget, the conversation id)."""
    site = visitor.new_page()
    frame = open_widget(site)
    send(frame, "Hi, I need help with a bulk order")
    expect(frame.get_by_role("log", name="Conversation").locator(".pv-row.pv-ai[data-seq]")).to_have_count(1)
    frame.get_by_role("button", name="Talk to a human").click()
    expect(frame.locator("body")).to_have_attribute("data-state", "pending")
    return site, frame, str(Handoff.objects.latest("requested_at").conversation.public_id)


def _claim_in_console(page: Page, conversation: str) -> None:
    page.goto(f"/dashboard/conversations/{conversation}/")
    page.get_by_role("button", name="Claim").click()
    # Generous: on a loaded machine a socket command that stays silent 5 s is resent over HTTP.
    expect(page.locator("[data-badge]")).to_contain_text("Claimed by", timeout=3 * LIVE)


def test_alice_transfers_to_bob_who_is_told_live_and_accepts(
    context: BrowserContext, second_context: BrowserContext, visitor: BrowserContext
) -> None:
    seed_demo()
    errors: list[str] = []
    alice = _login(context, "alice", errors)
    bob = _login(second_context, "bob", errors)  # his console is open: Bob is Online
    site, frame, conversation = _visitor_waits(visitor)
    body = frame.locator("body")
    _claim_in_console(alice, conversation)
    expect(body).to_have_attribute("data-state", "active")
    expect(frame.get_by_text("Alice from the team")).to_be_visible()

    alice.get_by_role("button", name="Transfer to…").click()
    dialog = alice.locator("[data-transfer-dialog]")
    expect(dialog.get_by_label("Online colleague")).to_have_value(str(User.objects.get(username="bob").pk))
    screenshot(alice, "transfer-dialog")
    dialog.get_by_role("button", name="Transfer").click()
    expect(dialog).to_be_hidden()
    expect(alice.locator("[data-thread]")).to_contain_text("Alice transferred the conversation to Bob.")
    expect(alice.locator("[data-badge]")).to_have_text("Transferring to Bob")
    expect(alice.get_by_role("button", name="Claim")).to_be_hidden()  # only Bob may take it now

    # The visitor is told who is coming; the thread shows the event.
    expect(body).to_have_attribute("data-state", "pending")
    expect(frame.get_by_text("Transferring you to Bob…")).to_be_visible()
    expect(frame.get_by_role("log", name="Conversation")).to_contain_text("Alice transferred the conversation to Bob")
    screenshot(site, "transfer-widget-waiting-for-bob")

    # Bob's console: a live notice with Accept and Decline, wherever he is.
    notice = bob.locator(f'[data-offer="{conversation}"]')
    expect(notice).to_contain_text("Alice transferred a conversation to you", timeout=LIVE)
    screenshot(bob, "transfer-bob-notice")
    notice.get_by_role("button", name="Accept").click()
    expect(bob).to_have_url(re.compile(f"/dashboard/conversations/{conversation}/$"))
    expect(bob.locator("[data-badge]")).to_have_text("Claimed by Bob", timeout=LIVE)
    bob.locator("#reply-box").fill("Hi, Bob here — I handle bulk orders.")
    bob.get_by_role("button", name="Send").click()

    expect(body).to_have_attribute("data-state", "active")
    expect(frame.get_by_text("Bob from the team")).to_be_visible()
    expect(frame.get_by_role("log", name="Conversation")).to_contain_text("Bob here")
    screenshot(site, "transfer-widget-bob-live")
    screenshot(bob, "transfer-bob-console")
    handoff = Handoff.objects.select_related("claimed_by").get(conversation__public_id=conversation)
    assert handoff.claimed_by is not None and handoff.claimed_by.username == "bob"
    assert errors == []


def test_release_puts_it_back_in_the_handoff_tab_and_the_badge(
    context: BrowserContext, second_context: BrowserContext, visitor: BrowserContext
) -> None:
    seed_demo()
    errors: list[str] = []
    alice = _login(context, "alice", errors)
    bob = _login(second_context, "bob", errors)
    tab(bob, "Handoff").click()
    site, frame, conversation = _visitor_waits(visitor)
    _claim_in_console(alice, conversation)
    expect(frame.locator("body")).to_have_attribute("data-state", "active")
    badge = bob.locator("[data-unclaimed-badge]").first
    expect(badge).to_be_hidden(timeout=LIVE)

    alice.get_by_role("button", name="Release").click()

    expect(alice.locator("[data-badge]")).to_have_text("Waiting", timeout=LIVE)
    expect(alice.get_by_role("button", name="Claim")).to_be_visible()
    expect(badge).to_have_text("1", timeout=LIVE)
    row = bob.locator(f'[data-conversation="{conversation}"]')
    expect(row).to_contain_text("Waiting", timeout=LIVE)
    expect(frame.locator("body")).to_have_attribute("data-state", "pending")
    expect(frame.get_by_text("Waiting for a team member…", exact=True)).to_be_visible()
    expect(frame.get_by_role("log", name="Conversation")).to_contain_text("Alice left the conversation")
    screenshot(bob, "release-handoff-tab")
    screenshot(site, "release-widget-waiting")
    assert errors == []


def test_an_owner_takes_over_and_the_previous_agent_is_told(
    context: BrowserContext, second_context: BrowserContext, visitor: BrowserContext
) -> None:
    seed_demo()
    _make_owner("alice")
    errors: list[str] = []
    bob = _login(second_context, "bob", errors)
    site, frame, conversation = _visitor_waits(visitor)
    _claim_in_console(bob, conversation)
    expect(frame.get_by_text("Bob from the team")).to_be_visible()
    bob.goto("/dashboard/conversations/")

    alice = _login(context, "alice", errors)
    alice.goto(f"/dashboard/conversations/{conversation}/")
    expect(alice.get_by_role("button", name="Claim")).to_be_hidden()
    screenshot(alice, "takeover-before")
    alice.get_by_role("button", name="Take over").click()

    expect(alice.locator("[data-badge]")).to_have_text("Claimed by Alice", timeout=LIVE)
    expect(alice.locator("#reply-box")).to_be_enabled()
    expect(alice.locator("[data-thread]")).to_contain_text("Alice took over the conversation.")
    expect(frame.get_by_text("Alice from the team")).to_be_visible(timeout=LIVE)
    expect(frame.get_by_role("log", name="Conversation")).to_contain_text("Alice took over the conversation")
    notice = bob.locator(f'[data-taken-over="{conversation}"]')
    expect(notice).to_contain_text("Alice took over your conversation", timeout=LIVE)
    screenshot(bob, "takeover-bob-notice")
    screenshot(site, "takeover-widget-alice")
    assert errors == []


def test_bob_declines_and_the_chat_is_back_in_the_queue_at_once(
    context: BrowserContext, second_context: BrowserContext, visitor: BrowserContext
) -> None:
    seed_demo()
    errors: list[str] = []
    alice = _login(context, "alice", errors)
    bob = _login(second_context, "bob", errors)
    tab(bob, "Handoff").click()
    site, frame, conversation = _visitor_waits(visitor)
    _claim_in_console(alice, conversation)
    alice.get_by_role("button", name="Transfer to…").click()
    alice.locator("[data-transfer-dialog]").get_by_role("button", name="Transfer").click()
    expect(frame.get_by_text("Transferring you to Bob…")).to_be_visible(timeout=LIVE)

    notice = bob.locator(f'[data-offer="{conversation}"]')
    notice.get_by_role("button", name="Decline").click()

    expect(notice).to_be_hidden(timeout=LIVE)
    expect(frame.get_by_text("Waiting for a team member…", exact=True)).to_be_visible(timeout=LIVE)
    expect(frame.get_by_role("log", name="Conversation")).to_contain_text("Bob didn't accept")
    expect(alice.locator("[data-badge]")).to_have_text("Waiting", timeout=LIVE)
    expect(alice.get_by_role("button", name="Claim")).to_be_visible()
    expect(alice.locator("[data-thread]")).to_contain_text("Bob didn't accept; the conversation is back in the queue.")
    expect(bob.locator("[data-unclaimed-badge]").first).to_have_text("1", timeout=LIVE)
    screenshot(site, "transfer-declined-widget")
    screenshot(alice, "transfer-declined-console")
    assert errors == []
