"""The agent dashboard, end to end: two agents in two browsers and one visitor in the real widget.

The visitor chats on the demo site and taps "Talk to a human"; the handoff appears for both agents
with the red badge; Alice claims it, Bob sees it claimed and cannot reply; Alice's reply shows in
the widget; she resolves it through the dialog and the widget says so; it moves to the Open tab as
closed; and the CSV and JSON exports hold the whole thread. The delays of the two live changes the
acceptance times ("within a second") are measured and written to test-artifacts, never asserted."""

from __future__ import annotations

import csv
import io
import json

from playwright.sync_api import Browser, BrowserContext, Page, expect

from chatbots.models import Chatbot
from conversations.models import Conversation, Event
from handoff.transitions.request import handoff_request
from pivra.stack import AppProcesses
from tests.e2e.conftest import screenshot
from tests.e2e.console_helpers import (
    LIVE,
    PASSWORD,
    clicked_at,
    handoff_queue,
    latency_sample,
    record_latency,
    row,
    say,
    seed,
    seeded_visitor,
    seen_at,
    shot,
    stamp_click,
    tab,
    visitor_context,
    watch_for,
    widget_rows,
)
from tests.e2e.widget_helpers import off_thread, open_widget, send
from tests.factories import make_user, make_workspace

FIRST = "Hi! One of the poles of my Trailhead 2 tent snapped on the first night."
TEST = "test_console.two_agents"


def test_two_agents_and_a_visitor_in_the_widget_through_a_whole_handoff(
    browser: Browser, context: BrowserContext, second_context: BrowserContext, live_stack: AppProcesses
) -> None:
    seed()
    script_errors: list[str] = []
    alice = handoff_queue(context, "alice", script_errors)
    bob = handoff_queue(second_context, "bob", script_errors)
    for agent in (alice, bob):
        expect(agent.locator("[data-unclaimed-badge]")).to_have_text("2")
        expect(agent).to_have_title("(2) Conversations · Pivra")
        expect(agent.locator('[data-status="busy"]')).to_contain_text("Team busy")
        expect(agent.locator('[data-status="active"]')).to_contain_text("Claimed by Bob")

    visitor_browser = visitor_context(browser, live_stack.http_url)
    try:
        shop = visitor_browser.new_page()
        shop.on("pageerror", lambda error: script_errors.append(f"widget: {error}"))
        frame = open_widget(shop)
        widget = frame.locator("body")

        # The visitor chats with the AI, then taps "Talk to a human": both agents see it live.
        send(frame, FIRST)
        expect(widget_rows(frame, "ai")).to_have_count(1)
        conversation = str(Event.objects.get(author="visitor", text=FIRST).conversation.public_id)
        for agent in (alice, bob):
            watch_for(agent, "new", f'[data-conversation="{conversation}"] [data-badge]', "Waiting")
        human = frame.get_by_role("button", name="Talk to a human")
        stamp_click(human, "human")
        human.click()
        expect(widget).to_have_attribute("data-state", "pending")
        expect(frame.get_by_text("Waiting for a team member…")).to_be_visible()
        send(frame, "It's the long curved one. Can you send a replacement?")
        expect(widget_rows(frame, "visitor")).to_have_count(2)
        for agent in (alice, bob):
            listed = row(agent, conversation)
            expect(listed).to_contain_text("Waiting", timeout=LIVE)
            expect(listed).to_contain_text("Button")
            expect(listed).to_contain_text("replacement", timeout=LIVE)
            expect(agent.locator("[data-unclaimed-badge]")).to_have_text("3", timeout=LIVE)
            expect(agent.locator("[data-unclaimed-badge]")).to_be_visible()
            expect(agent).to_have_title("(3) Conversations · Pivra", timeout=LIVE)
        asked = clicked_at(widget, "human")
        record_latency(
            TEST,
            "new_handoff_appears",
            [
                latency_sample(seen_at(agent, "new") - asked, f"{n}'s Handoff tab")
                for n, agent in (("alice", alice), ("bob", bob))
            ],
        )
        waited = row(alice, conversation).locator("[data-since]")
        first = waited.inner_text()
        expect(waited).not_to_have_text(first, timeout=LIVE)  # time waiting ticks
        _shot_widget(shop, "console-widget-pending")
        shot(alice, "console-handoff-tab")

        # Both open it; Alice claims; Bob sees the claim live and his reply box is locked.
        bob.goto(f"/dashboard/conversations/{conversation}/")
        row(alice, conversation).get_by_role("link").click()
        expect(alice.locator("[data-badge]")).to_have_text("Waiting")
        expect(bob.get_by_role("button", name="Claim")).to_be_visible()
        expect(alice.get_by_placeholder("Reply to visitor")).to_be_disabled()
        expect(alice.get_by_text("Claim this conversation to reply to the visitor.")).to_be_visible()
        watch_for(bob, "claimed", "[data-badge]", "Claimed by Alice")
        stamp_click(alice.locator("[data-claim]"), "claim")
        alice.get_by_role("button", name="Claim").click()
        expect(alice.locator("[data-badge]")).to_have_text("Claimed by Alice")
        expect(bob.locator("[data-badge]")).to_have_text("Claimed by Alice", timeout=LIVE)
        record_latency(
            TEST,
            "claim_seen_by_other_agent",
            [
                latency_sample(
                    seen_at(bob, "claimed") - clicked_at(alice.locator("body"), "claim"), "bob's conversation view"
                )
            ],
        )
        expect(bob.get_by_placeholder("Reply to visitor")).to_be_disabled()
        expect(bob.get_by_text("Alice claimed this conversation, so only they can reply.")).to_be_visible()
        expect(bob.get_by_role("button", name="Claim")).to_be_hidden()
        expect(bob.get_by_role("button", name="Resolve")).to_be_hidden()
        expect(bob.locator('[data-field="claimed_by"]')).to_have_text("Alice")
        expect(bob.locator(".ev-system").last).to_contain_text("Alice joined the conversation.")
        expect(bob.locator("[data-unclaimed-badge]")).to_have_text("2", timeout=LIVE)
        expect(widget).to_have_attribute("data-state", "active", timeout=LIVE)
        expect(frame.get_by_text("● Live Agent")).to_be_visible()
        shot(bob, "console-conversation-claimed-by-other")

        # A stale button (the claim raced Bob's click) gets the API's readable error, not a crash.
        bob.evaluate("document.querySelector('[data-claim]').hidden = false")
        bob.get_by_role("button", name="Claim").click()
        expect(bob.get_by_role("alert").filter(has_text="Already claimed by Alice.")).to_be_visible()

        # Alice replies with Enter (Shift+Enter is a new line); the widget renders it, with her name.
        box = alice.get_by_placeholder("Reply to visitor")
        expect(box).to_be_enabled()
        box.fill("Hi, I'm Alice from Northwind. So sorry about that!")
        box.press("Shift+Enter")
        box.press_sequentially("I'll ship a replacement pole today.")
        box.press("Enter")
        expect(box).to_have_value("")
        reply_text = "Hi, I'm Alice from Northwind. So sorry about that!\nI'll ship a replacement pole today."
        expect(alice.locator(".ev-agent .ev-bubble").last).to_have_text(reply_text)
        in_widget = widget_rows(frame, "agent")
        expect(in_widget).to_have_count(1, timeout=LIVE)
        expect(in_widget.locator(".pv-name")).to_have_text("Alice")
        expect(in_widget.locator(".pv-bubble")).to_be_visible()
        assert in_widget.locator(".pv-bubble").inner_text() == reply_text  # the line break is kept
        expect(bob.locator(".ev-agent .ev-bubble").last).to_have_text(reply_text, timeout=LIVE)

        # The visitor answers in the widget: it shows up live for Alice, as text.
        send(frame, "Amazing, thank you! <b>Really</b> appreciated.")
        expect(alice.locator(".ev-visitor .ev-bubble").last).to_have_text(
            "Amazing, thank you! <b>Really</b> appreciated.", timeout=LIVE
        )
        expect(frame.get_by_role("log", name="Conversation").locator("b")).to_have_count(0)
        expect(alice.locator('[data-field="browser"]')).to_have_text("Chrome 126 on macOS")
        expect(alice.locator('[data-field="current_page"] a')).to_have_attribute("href", f"{live_stack.http_url}/demo/")
        alice.get_by_placeholder("Reply to visitor").fill("You're welcome! Tracking number follows by email.")
        alice.get_by_role("button", name="Send").click()
        expect(in_widget.last.locator(".pv-bubble")).to_have_text(
            "You're welcome! Tracking number follows by email.", timeout=LIVE
        )
        _shot_widget(shop, "console-widget-agent-reply")
        shot(alice, "console-conversation")

        # Resolve through the confirmation dialog; the widget says it is resolved.
        alice.get_by_role("button", name="Resolve").click()
        dialog = alice.get_by_role("dialog")
        expect(dialog).to_be_visible()
        expect(dialog).to_contain_text("Resolve this conversation?")
        shot(alice, "console-resolve-dialog")
        dialog.get_by_role("button", name="Yes, resolve", exact=True).click()
        expect(dialog).to_be_hidden()
        expect(alice.locator("[data-badge]")).to_have_text("Resolved")
        expect(alice.get_by_placeholder("Reply to visitor")).to_be_disabled()
        expect(bob.locator("[data-badge]")).to_have_text("Resolved", timeout=LIVE)
        expect(widget).to_have_attribute("data-state", "resolved", timeout=LIVE)
        expect(frame.get_by_text("Conversation resolved ✓")).to_be_visible()
        _shot_widget(shop, "console-widget-resolved")
        widget_messages = [
            (
                author,
                widget_rows(frame, author).evaluate_all(
                    "rows => rows.map(r => r.querySelector('.pv-bubble').innerText)"
                ),
            )
            for author in ("visitor", "ai", "agent")
        ]
    finally:
        visitor_browser.close()

    # It left the Handoff tab and sits in the Open tab as closed.
    alice.goto("/dashboard/conversations/?tab=handoff")
    expect(row(alice, conversation)).to_have_count(0)
    tab(alice, "Open").click()
    expect(alice).to_have_url(f"{live_stack.http_url}/dashboard/conversations/?tab=open")
    expect(row(alice, conversation).locator("[data-badge]")).to_have_text("Closed")
    assert Conversation.objects.get(public_id=conversation).status == "closed"

    # CSV and JSON exports (streamed through daphne) hold every event, agent replies included, and
    # every message the widget showed.
    stored = list(Event.objects.filter(conversation__public_id=conversation).order_by("seq"))
    assert {e.author for e in stored} == {"visitor", "ai", "system", "agent"}
    expected = [(e.seq, e.author, e.text) for e in stored]
    exported = alice.request.get(f"/dashboard/conversations/{conversation}/export.json")
    assert exported.ok, exported.text()
    (thread,) = json.loads(exported.body())["conversations"]
    assert thread["status"] == "closed"
    assert [(e["seq"], e["author"], e["text"]) for e in thread["events"]] == expected
    for author, texts in widget_messages:
        assert texts, author
        assert texts == [e["text"] for e in thread["events"] if e["author"] == author and e["kind"] == "message"]
    exported = alice.request.get(f"/dashboard/conversations/{conversation}/export.csv")
    assert exported.ok
    assert exported.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(exported.body().decode("utf-8-sig"))))
    assert [(int(r["seq"]), r["author"], r["text"]) for r in rows] == expected
    whole = alice.request.get("/dashboard/conversations/export.json?tab=open&status=closed")
    assert conversation in [c["conversation"] for c in json.loads(whole.body())["conversations"]]

    # The analytics page, for the screenshot and a sanity check of its figures.
    alice.get_by_role("link", name="Analytics").click()
    expect(alice.get_by_role("heading", name="Handoff analytics")).to_be_visible()
    expect(alice.locator('[data-stat="total"]')).not_to_have_text("0")
    alice.get_by_role("link", name="30 days").click()
    expect(alice.locator(".bar-chart")).to_be_visible()
    shot(alice, "console-analytics")
    alice.goto("/dashboard/conversations/?tab=open")
    shot(alice, "console-open-tab")
    assert script_errors == []


def _shot_widget(page: Page, name: str) -> None:
    page.wait_for_function("document.getAnimations().every((a) => a.playState !== 'running')")
    screenshot(page, name)


def _ask_for_a_person(bot: Chatbot) -> str:
    visitor, conversation = seeded_visitor(bot, page="https://northwind.example/tents")
    say(visitor, conversation, "hello")
    handoff_request(visitor=visitor, conversation_public_id=str(conversation.public_id), trigger="button")
    return str(conversation.public_id)


def test_an_agent_of_another_workspace_cannot_open_the_conversation(
    context: BrowserContext, live_stack: AppProcesses
) -> None:
    bot = seed()
    make_workspace("Elsewhere", owner=make_user("mallory", password=PASSWORD))  # no broadcast: safe here
    conversation = off_thread(_ask_for_a_person, bot=bot)
    mallory = handoff_queue(context, "mallory")
    expect(mallory.get_by_text("No one is waiting for a person")).to_be_visible()
    expect(mallory.locator("[data-unclaimed-badge]")).to_be_hidden()
    # The new-handoff sound can be turned off, and stays off.
    toggle = mallory.locator("[data-sound-toggle]")
    expect(toggle).to_have_attribute("aria-pressed", "true")
    toggle.click()
    expect(toggle).to_have_text("Sound off")
    mallory.reload()
    expect(mallory.locator("[data-sound-toggle]")).to_have_attribute("aria-pressed", "false")
    response = mallory.goto(f"/dashboard/conversations/{conversation}/")
    assert response is not None and response.status == 404
    claim = mallory.request.post(
        f"/api/console/handoffs/{conversation}/claim",
        headers={"X-CSRFToken": _csrf(mallory)},
    )
    assert claim.status == 404
    assert claim.json()["code"] == "handoff_not_found"


def _csrf(page: Page) -> str:
    cookies = {c["name"]: c["value"] for c in page.context.cookies()}
    return cookies.get("csrftoken", "")
