"""The agent dashboard, end to end: two agents in two browsers and one visitor on the widget API.

A new handoff appears for both agents with the red badge; Alice claims it, Bob sees it claimed
within a second and cannot reply; Alice's reply reaches the visitor; she resolves it through the
dialog; it moves to the Open tab as closed; and the CSV and JSON exports hold the whole thread."""

from __future__ import annotations

import csv
import io
import json
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

import httpx
from django.db import connections, transaction
from django.utils import timezone
from playwright.sync_api import BrowserContext, Page, expect

from chatbots.models import Chatbot, Membership
from chatbots.services import membership_add
from conversations.models import Conversation, Visitor
from conversations.services import conversation_receive_visitor_message, visitor_create, visitor_touch
from handoff.services import handoff_claim, handoff_expire, handoff_request, handoff_resolve, lead_capture
from handoff.state import visitor_current_conversation
from pivra.stack import AppProcesses
from tests.e2e.conftest import screenshot
from tests.factories import make_chatbot, make_user, make_workspace
from tests.handoff_helpers import enable_handoff

PASSWORD = "agent-pass-123"
LIVE = 5_000  # ms: "within a second" with room for a loaded CI machine
CHROME_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)


# --- seed data, through the services -------------------------------------------------------------


def _seed() -> Chatbot:
    # Playwright's event loop runs in the test's thread, where the services' broadcasts (async_to_sync)
    # cannot run: seed from a worker thread, like any other server-side caller.
    with ThreadPoolExecutor(max_workers=1) as pool:
        return pool.submit(_seed_in_thread).result()


def _seed_in_thread() -> Chatbot:
    try:
        return _seed_data()
    finally:
        connections.close_all()


def _seed_data() -> Chatbot:
    alice = make_user("alice", password=PASSWORD)
    bob = make_user("bob", password=PASSWORD)
    for user, first in ((alice, "Alice"), (bob, "Bob")):
        user.first_name = first
        user.save(update_fields=["first_name"])
    workspace = make_workspace("Northwind Outdoors", owner=alice)
    membership_add(workspace=workspace, user=bob, role=Membership.Role.AGENT)
    bot = make_chatbot(workspace, "Support bot")
    bot = enable_handoff(bot, timeout=3600)  # nothing times out by itself during the test
    _seed_history(bot, alice, bob)
    _seed_queue(bot, bob)
    return bot


def _visitor(bot: Chatbot, *, page: str, locale: str = "en-GB") -> tuple[Visitor, Conversation]:
    visitor = visitor_create(chatbot=bot, locale=locale, user_agent=CHROME_UA, page=page)
    visitor_touch(visitor=visitor)
    return visitor, visitor_current_conversation(visitor=visitor)


def _say(visitor: Visitor, conversation: Conversation, text: str) -> None:
    conversation_receive_visitor_message(
        visitor=visitor, conversation_public_id=str(conversation.public_id), client_id=uuid.uuid4().hex, text=text
    )


def _seed_history(bot: Chatbot, alice: Any, bob: Any) -> None:
    """Two weeks of resolved handoffs, so the analytics page has something to show."""
    now = timezone.now()
    waits = [35, 80, 20, 140, 60, 300, 45, 95, 15, 250, 70, 40, 400, 55, 25, 120, 65, 30, 210, 85]
    for index, wait in enumerate(waits):
        asked = now - timedelta(days=13 - (index * 13) // len(waits), hours=3 + index % 5)
        visitor, conversation = _visitor(bot, page="https://northwind.example/shop")
        _say(visitor, conversation, f"Question {index + 1} about an order")
        key = str(conversation.public_id)
        with transaction.atomic():  # claimed before the expiry task can see it pending
            handoff = handoff_request(visitor=visitor, conversation_public_id=key, trigger="button", now=asked)
            late = index % 6 == 5
            if late or index % 7 == 3:
                handoff_expire(handoff_id=handoff.pk, now=asked + timedelta(seconds=3601))
            if index % 7 != 3:
                agent = alice if index % 2 else bob
                claim_wait = 3700 + wait if late else wait
                handoff_claim(agent=agent, conversation_public_id=key, now=asked + timedelta(seconds=claim_wait))
                handoff_resolve(
                    agent=agent, conversation_public_id=key, now=asked + timedelta(seconds=claim_wait + 600)
                )
            else:
                handoff_resolve(agent=alice, conversation_public_id=key, now=asked + timedelta(seconds=4000))


def _seed_queue(bot: Chatbot, bob: Any) -> None:
    """Already in the queue: one keyword request waiting, one gone to Team busy, one claimed by Bob."""
    now = timezone.now()
    visitor, waiting = _visitor(bot, page="https://northwind.example/bulk-orders")
    _say(visitor, waiting, "Can I speak to someone about a bulk order for our scout group?")
    handoff_request(
        visitor=visitor,
        conversation_public_id=str(waiting.public_id),
        trigger="keyword",
        now=now - timedelta(minutes=2, seconds=10),
    )

    visitor, busy = _visitor(bot, page="https://northwind.example/orders/1042")
    _say(visitor, busy, "My order #1042 still hasn't arrived and it's been two weeks.")
    with transaction.atomic():
        handoff = handoff_request(
            visitor=visitor,
            conversation_public_id=str(busy.public_id),
            trigger="button",
            now=now - timedelta(hours=1, minutes=4),
        )
        handoff_expire(handoff_id=handoff.pk, now=now - timedelta(minutes=4))
    lead_capture(visitor=visitor, conversation_public_id=str(busy.public_id), phone="+44 7911 123456")

    visitor, claimed = _visitor(bot, page="https://northwind.example/shipping")
    _say(visitor, claimed, "Do you ship to Norway?")
    with transaction.atomic():
        handoff_request(
            visitor=visitor,
            conversation_public_id=str(claimed.public_id),
            trigger="button",
            now=now - timedelta(minutes=7),
        )
        handoff_claim(
            agent=bob, conversation_public_id=str(claimed.public_id), now=now - timedelta(minutes=6, seconds=18)
        )


# --- the visitor, through the widget API -----------------------------------------------------------


class WidgetVisitor:
    def __init__(self, base_url: str, public_key: str) -> None:
        self.http = httpx.Client(base_url=base_url, timeout=10, headers={"User-Agent": CHROME_UA})
        session = self.http.post(
            "/api/widget/session",
            json={"public_key": public_key, "locale": "en-GB", "page": "https://northwind.example/tents/trailhead-2"},
        )
        assert session.status_code == 200, session.text
        self.http.headers["Authorization"] = f"Bearer {session.json()['token']}"
        self.conversation: str = session.json()["state"]["conversation"]

    def say(self, text: str) -> int:
        response = self.http.post("/api/widget/messages", json={"client_id": uuid.uuid4().hex, "text": text})
        assert response.status_code == 200, response.text
        return int(response.json()["seq"])

    def ask_for_a_person(self) -> None:
        response = self.http.post("/api/widget/handoff", json={"client_id": uuid.uuid4().hex})
        assert response.status_code == 200, response.text

    def events(self) -> list[dict[str, Any]]:
        response = self.http.get("/api/widget/events", params={"conversation": self.conversation})
        assert response.status_code == 200, response.text
        return list(response.json()["events"])

    def wait_for(self, predicate, what: str) -> dict[str, Any]:
        deadline = time.monotonic() + 10
        while True:
            found = [e for e in self.events() if predicate(e)]
            if found:
                return found[-1]
            assert time.monotonic() < deadline, f"the visitor never got {what}"
            time.sleep(0.1)


# --- agents, in the browser ---------------------------------------------------------------------


def _login(context: BrowserContext, username: str, errors: list[str] | None = None) -> Page:
    page = context.new_page()
    if errors is not None:
        page.on("pageerror", lambda error: errors.append(f"{username}: {error}"))
    page.goto("/accounts/login/?next=/dashboard/conversations/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Conversations", exact=True)).to_be_visible()
    return page


def _shot(page: Page, name: str) -> None:
    page.wait_for_function("document.getAnimations().every((a) => a.playState !== 'running')")
    screenshot(page, name)


def _tab(page: Page, name: str):
    return page.get_by_role("navigation", name="Conversation tabs").get_by_role("link", name=name)


def _row(page: Page, conversation: str):
    return page.locator(f'[data-conversation="{conversation}"]')


def test_two_agents_and_a_visitor_through_a_whole_handoff(
    context: BrowserContext, second_context: BrowserContext, live_stack: AppProcesses
) -> None:
    bot = _seed()
    script_errors: list[str] = []
    alice = _login(context, "alice", script_errors)
    bob = _login(second_context, "bob", script_errors)
    for agent in (alice, bob):
        _tab(agent, "Handoff").click()
        expect(agent.locator("[data-unclaimed-badge]")).to_have_text("2")
        expect(agent.locator('[data-status="busy"]')).to_contain_text("Team busy")
        expect(agent.locator('[data-status="active"]')).to_contain_text("Claimed by Bob")

    # The visitor chats with the AI, then asks for a person: both agents see it without reloading.
    visitor = WidgetVisitor(live_stack.http_url, bot.public_key)
    visitor.say("Hi! One of the poles of my Trailhead 2 tent snapped on the first night.")
    visitor.wait_for(lambda e: e["author"] == "ai", "an AI answer")
    visitor.ask_for_a_person()
    visitor.say("It's the long curved one. Can you send a replacement?")
    for agent in (alice, bob):
        row = _row(agent, visitor.conversation)
        expect(row).to_contain_text("Waiting", timeout=LIVE)
        expect(row).to_contain_text("Button")
        expect(row).to_contain_text("replacement")
        expect(agent.locator("[data-unclaimed-badge]")).to_have_text("3", timeout=LIVE)
        expect(agent.locator("[data-unclaimed-badge]")).to_be_visible()
        expect(agent).to_have_title("(3) Conversations · Pivra", timeout=LIVE)
    waited = _row(alice, visitor.conversation).locator("[data-since]")
    first = waited.inner_text()
    expect(waited).not_to_have_text(first, timeout=LIVE)  # time waiting ticks
    _shot(alice, "console-handoff-tab")

    # Both open it; Alice claims; Bob sees the claim live and his reply box is locked.
    bob.goto(f"/dashboard/conversations/{visitor.conversation}/")
    _row(alice, visitor.conversation).get_by_role("link").click()
    expect(alice.locator("[data-badge]")).to_have_text("Waiting")
    expect(bob.get_by_role("button", name="Claim")).to_be_visible()
    expect(alice.get_by_placeholder("Reply to visitor")).to_be_disabled()
    expect(alice.get_by_text("Claim this conversation to reply to the visitor.")).to_be_visible()
    alice.get_by_role("button", name="Claim").click()
    expect(alice.locator("[data-badge]")).to_have_text("Claimed by Alice")
    expect(bob.locator("[data-badge]")).to_have_text("Claimed by Alice", timeout=LIVE)
    expect(bob.get_by_placeholder("Reply to visitor")).to_be_disabled()
    expect(bob.get_by_text("Alice claimed this conversation, so only they can reply.")).to_be_visible()
    expect(bob.get_by_role("button", name="Claim")).to_be_hidden()
    expect(bob.get_by_role("button", name="Resolve")).to_be_hidden()
    expect(bob.locator('[data-field="claimed_by"]')).to_have_text("Alice")
    expect(bob.locator(".ev-system").last).to_contain_text("Alice joined the conversation.")
    expect(bob.locator("[data-unclaimed-badge]")).to_have_text("2", timeout=LIVE)
    _shot(bob, "console-conversation-claimed-by-other")

    # A stale button (the claim raced Bob's click) gets the API's readable error, not a crash.
    bob.evaluate("document.querySelector('[data-claim]').hidden = false")
    bob.get_by_role("button", name="Claim").click()
    expect(bob.get_by_role("alert").filter(has_text="Already claimed by Alice.")).to_be_visible()

    # Alice replies with Enter (Shift+Enter is a new line); the visitor gets it.
    box = alice.get_by_placeholder("Reply to visitor")
    expect(box).to_be_enabled()
    box.fill("Hi, I'm Alice from Northwind. So sorry about that!")
    box.press("Shift+Enter")
    box.press_sequentially("I'll ship a replacement pole today.")
    box.press("Enter")
    expect(box).to_have_value("")
    reply_text = "Hi, I'm Alice from Northwind. So sorry about that!\nI'll ship a replacement pole today."
    expect(alice.locator(".ev-agent .ev-bubble").last).to_have_text(reply_text)
    got = visitor.wait_for(lambda e: e["author"] == "agent", "the agent's reply")
    assert (got["text"], got["agent"]) == (reply_text, "Alice")
    expect(bob.locator(".ev-agent .ev-bubble").last).to_have_text(reply_text, timeout=LIVE)

    # The visitor answers: it shows up live, as text.
    visitor.say("Amazing, thank you! <b>Really</b> appreciated.")
    expect(alice.locator(".ev-visitor .ev-bubble").last).to_have_text(
        "Amazing, thank you! <b>Really</b> appreciated.", timeout=LIVE
    )
    expect(alice.locator('[data-field="browser"]')).to_have_text("Chrome 126 on macOS")
    expect(alice.locator('[data-field="current_page"]')).to_contain_text("northwind.example/tents/trailhead-2")
    alice.get_by_placeholder("Reply to visitor").fill("You're welcome! Tracking number follows by email.")
    alice.get_by_role("button", name="Send").click()
    visitor.wait_for(lambda e: e["text"] == "You're welcome! Tracking number follows by email.", "the second reply")
    _shot(alice, "console-conversation")

    # Resolve through the confirmation dialog.
    alice.get_by_role("button", name="Resolve").click()
    dialog = alice.get_by_role("dialog")
    expect(dialog).to_be_visible()
    expect(dialog).to_contain_text("Resolve this conversation?")
    _shot(alice, "console-resolve-dialog")
    dialog.get_by_role("button", name="Yes, resolve", exact=True).click()
    expect(dialog).to_be_hidden()
    expect(alice.locator("[data-badge]")).to_have_text("Resolved")
    expect(alice.get_by_placeholder("Reply to visitor")).to_be_disabled()
    expect(bob.locator("[data-badge]")).to_have_text("Resolved", timeout=LIVE)
    visitor.wait_for(lambda e: e["kind"] == "handoff.resolved", "the resolution")

    # It left the Handoff tab and sits in the Open tab as closed.
    alice.goto("/dashboard/conversations/?tab=handoff")
    expect(_row(alice, visitor.conversation)).to_have_count(0)
    _tab(alice, "Open").click()
    expect(alice).to_have_url(f"{live_stack.http_url}/dashboard/conversations/?tab=open")
    expect(_row(alice, visitor.conversation).locator("[data-badge]")).to_have_text("Closed")

    # CSV and JSON exports (streamed through daphne) hold every message, agent replies included.
    thread = visitor.events()
    assert {e["author"] for e in thread} == {"visitor", "ai", "system", "agent"}
    expected = [(e["seq"], e["author"], e["text"]) for e in thread]
    exported = alice.request.get(f"/dashboard/conversations/{visitor.conversation}/export.json")
    assert exported.ok, exported.text()
    (conversation,) = json.loads(exported.body())["conversations"]
    assert conversation["status"] == "closed"
    assert [(e["seq"], e["author"], e["text"]) for e in conversation["events"]] == expected
    exported = alice.request.get(f"/dashboard/conversations/{visitor.conversation}/export.csv")
    assert exported.ok
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.body().decode("utf-8-sig"))))
    assert [(int(r["seq"]), r["author"], r["text"]) for r in rows] == expected
    whole = alice.request.get("/dashboard/conversations/export.json?tab=open&status=closed")
    assert visitor.conversation in [c["conversation"] for c in json.loads(whole.body())["conversations"]]

    # The analytics page, for the screenshot and a sanity check of its figures.
    alice.get_by_role("link", name="Analytics").click()
    expect(alice.get_by_role("heading", name="Handoff analytics")).to_be_visible()
    expect(alice.locator('[data-stat="total"]')).not_to_have_text("0")
    alice.get_by_role("link", name="30 days").click()
    expect(alice.locator(".bar-chart")).to_be_visible()
    _shot(alice, "console-analytics")
    alice.goto("/dashboard/conversations/?tab=open")
    _shot(alice, "console-open-tab")
    assert script_errors == []


def test_an_agent_of_another_workspace_cannot_open_the_conversation(
    context: BrowserContext, live_stack: AppProcesses
) -> None:
    bot = _seed()
    make_workspace("Elsewhere", owner=make_user("mallory", password=PASSWORD))  # no broadcast: safe here
    visitor = WidgetVisitor(live_stack.http_url, bot.public_key)
    visitor.say("hello")
    visitor.ask_for_a_person()
    mallory = _login(context, "mallory")
    _tab(mallory, "Handoff").click()
    expect(mallory.get_by_text("No one is waiting for a person")).to_be_visible()
    expect(mallory.locator("[data-unclaimed-badge]")).to_be_hidden()
    # The new-handoff sound can be turned off, and stays off.
    toggle = mallory.locator("[data-sound-toggle]")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    toggle.click()
    expect(toggle).to_have_text("Sound off")
    mallory.reload()
    expect(mallory.locator("[data-sound-toggle]")).to_have_attribute("aria-pressed", "false")
    response = mallory.goto(f"/dashboard/conversations/{visitor.conversation}/")
    assert response is not None and response.status == 404
    claim = mallory.request.post(
        f"/api/console/handoffs/{visitor.conversation}/claim",
        headers={"X-CSRFToken": _csrf(mallory)},
    )
    assert claim.status == 404
    assert claim.json()["code"] == "handoff_not_found"


def _csrf(page: Page) -> str:
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return cookies.get("csrftoken", "")
