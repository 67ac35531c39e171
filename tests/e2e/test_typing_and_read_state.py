"""Issue 16, items 1 and 2 in Chromium against the real stack: the visitor in the real widget (one browser
profile), Alice in the console (another). Typing both ways (and the owner's live preview), "Seen" under the
agent's message once the widget has shown it, and the per-agent unread count of the Conversations list."""

from __future__ import annotations

from collections.abc import Callable

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, FrameLocator, Page, expect

from chatbots.models import Chatbot
from conversations.models import ConversationRead
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from handoff.transitions.takeover import handoff_take_over
from pivra.console.live_marks import agent_typing_frame, agent_typing_target
from pivra.realtime import EVENT_TYPE, visitor_group
from tests.e2e.conftest import screenshot
from tests.e2e.console_helpers import login, row, shot
from tests.e2e.widget_helpers import DEMO_PASSWORD, off_thread, open_widget, seed_demo, send


def _wait_until(page: Page, done: Callable[[], bool]) -> None:
    """Wait (not a timing assertion) until ``done``, polling while the browser keeps running."""
    for _ in range(150):
        if done():
            return
        page.wait_for_timeout(100)
    raise AssertionError("never happened")


def _ask_for_a_person(page: Page) -> tuple[FrameLocator, str]:
    frame = open_widget(page)
    send(frame, "Hi, where is my parcel?")
    frame.get_by_role("button", name="Talk to a human").click()
    expect(frame.locator("body")).to_have_attribute("data-state", "pending")
    return frame, str(Handoff.objects.latest("requested_at").conversation.public_id)


def _alice_claims(context: BrowserContext, conversation: str) -> Page:
    """Alice claims (the handoff services; the Claim button has tests of its own), then opens the chat."""
    off_thread(handoff_claim, agent=User.objects.get(username="alice"), conversation_public_id=conversation)
    agent = login(context, "alice", password=DEMO_PASSWORD)
    agent.goto(f"/dashboard/conversations/{conversation}/")
    expect(agent.locator("#reply-box")).to_be_editable()
    return agent


def test_typing_both_ways_and_seen(page: Page, second_context: BrowserContext) -> None:
    seed_demo()
    frame, conversation = _ask_for_a_person(page)
    agent = _alice_claims(second_context, conversation)
    expect(frame.locator("body")).to_have_attribute("data-state", "active")

    # Alice types: the widget says so, with her public name; sending stops it.
    reply = agent.locator("#reply-box")
    reply.press_sequentially("Hi! Let me check that for you", delay=40)
    typing = frame.locator(".pv-typing-name")
    expect(typing).to_have_text("Alice is typing…")
    expect(frame.locator(".pv-typing")).to_be_visible()
    shot(page, "issue16-typing-widget")
    reply.press("Enter")
    log = frame.get_by_role("log", name="Conversation")
    expect(log).to_contain_text("Hi! Let me check that for you")
    expect(frame.locator(".pv-typing")).to_be_hidden()

    # The widget is open and the page visible: the visitor has seen it, and Alice is told.
    agent_message = agent.locator("[data-thread] li.ev-agent").last
    expect(agent_message.locator("[data-seen-mark]")).to_have_text("Seen")
    reply_seq = int(agent_message.get_attribute("data-seq") or 0)
    assert Handoff.objects.get().conversation.visitor_seen_seq >= reply_seq
    # Alice's read mark covers the visitor's messages only: her own reply, the newest event, moves nothing.
    visitor_seq = int(agent.locator("[data-thread] li.ev-visitor").last.get_attribute("data-seq") or 0)
    assert ConversationRead.objects.get(user__username="alice").last_read_seq == visitor_seq < reply_seq
    expect(frame.locator("[data-preview-note]")).to_have_count(0)  # the preview is off: nothing to say

    # The visitor types without sending: "Visitor is typing…", and no text (the preview is off by default).
    box = frame.get_by_role("textbox", name="Message")
    box.press_sequentially("It was order 1042", delay=40)
    indicator = agent.locator("[data-visitor-typing]")
    expect(indicator).to_contain_text("Visitor is typing…")
    expect(agent.locator("[data-typing-preview]")).to_be_hidden()
    screenshot(agent, "issue16-typing-console")  # not shot(): the dots animate while it shows
    box.press("Enter")
    expect(agent.locator("[data-thread]")).to_contain_text("It was order 1042")
    expect(indicator).to_be_hidden()

    # Alice's blur stops her typing too (no send needed).
    reply.press_sequentially("One moment", delay=40)
    expect(typing).to_have_text("Alice is typing…")
    agent.locator("h1").click()
    expect(frame.locator(".pv-typing")).to_be_hidden()
    # Reloaded, the console shows "Seen" from the stored mark.
    agent.reload()
    expect(agent.locator("[data-thread] li.ev-agent").last.locator("[data-seen-mark]")).to_have_text("Seen")
    shot(agent, "issue16-seen-console")


def test_the_owners_live_preview_shows_what_the_visitor_types(page: Page, second_context: BrowserContext) -> None:
    seed_demo()
    # The owner turns the preview on in the chatbot's settings (off by default, and the page says so).
    owner = login(page.context, "admin", password=DEMO_PASSWORD)
    owner.goto("/dashboard/settings/#live-chat")
    setting = owner.get_by_label("Show agents what the visitor is typing before they send it")
    expect(setting).not_to_be_checked()
    expect(owner.locator("#live-chat")).to_contain_text("Off by default")
    setting.check()
    owner.locator("#live-chat").evaluate("el => el.scrollIntoView({block: 'center'})")
    shot(owner, "issue16-typing-setting")
    owner.locator("#handoff").get_by_role("button", name="Save settings").click()
    expect(owner.get_by_text("Human handoff settings saved.")).to_be_visible()
    assert Chatbot.objects.get(workspace__slug="demo", name="Demo bot").typing_preview is True
    owner.close()
    frame, conversation = _ask_for_a_person(page)
    agent = _alice_claims(second_context, conversation)
    expect(frame.locator("body")).to_have_attribute("data-state", "active")

    frame.get_by_role("textbox", name="Message").press_sequentially("My order <b>1042</b> never came", delay=30)
    # The visitor is told, under the composer, while a person can read along.
    expect(frame.locator("[data-preview-note]")).to_have_text("The team can see what you type before you send it.")
    shot(page, "issue16-typing-preview-notice")
    preview = agent.locator("[data-typing-preview]")
    expect(preview).to_contain_text("Live preview · not sent yet")
    expect(preview).to_contain_text("My order <b>1042</b> never came")  # as text, never markup
    expect(preview.locator("b")).to_have_count(0)
    screenshot(agent, "issue16-typing-preview")


def test_the_unread_count_appears_live_and_clears_once_read(page: Page, second_context: BrowserContext) -> None:
    seed_demo()
    frame, conversation = _ask_for_a_person(page)
    agent = login(second_context, "alice", password=DEMO_PASSWORD)
    agent.goto("/dashboard/conversations/?tab=handoff")
    count = row(agent, conversation).locator("[data-unread]")
    expect(count).to_have_attribute("data-unread", "1")  # "Hi, where is my parcel?"
    send(frame, "Hello? Anyone there?")
    expect(count).to_have_attribute("data-unread", "2")  # live, from the console socket
    shot(agent, "issue16-seen-unread-list")

    # Alice reads it in another tab: the list's count goes there and then, without re-fetching the list.
    refetches: list[str] = []
    agent.on("request", lambda r: refetches.append(r.url) if "fragment=1" in r.url else None)
    reader = second_context.new_page()
    reader.goto(f"/dashboard/conversations/{conversation}/")
    expect(reader.locator("[data-thread]")).to_contain_text("Hello? Anyone there?")
    expect(count).to_have_count(0)
    assert refetches == []
    assert ConversationRead.objects.get(user__username="alice").last_read_seq > 0
    shot(agent, "issue16-seen-unread-cleared")


def _alice_types(conversation: str) -> None:
    """Alice's typing reaches the widget as her console page would send it (pivra.console.live_marks)."""
    alice = User.objects.get(username="alice")
    target = agent_typing_target(user_id=alice.pk, conversation_public_id=conversation)
    assert target is not None
    message = {"type": EVENT_TYPE, "frame": agent_typing_frame(target, on=True)}
    async_to_sync(get_channel_layer().group_send)(visitor_group(target.visitor), message)


def test_a_take_over_hides_the_previous_agents_typing(page: Page) -> None:
    seed_demo()
    frame, conversation = _ask_for_a_person(page)
    off_thread(handoff_claim, agent=User.objects.get(username="alice"), conversation_public_id=conversation)
    expect(frame.locator("body")).to_have_attribute("data-state", "active")
    off_thread(_alice_types, conversation=conversation)
    expect(frame.locator(".pv-typing-name")).to_have_text("Alice is typing…")

    # The owner takes the chat over: still a live chat, with another agent, and Alice's dots go with her
    # (her page's "off" may never come; the widget would otherwise show them 10 s longer).
    off_thread(handoff_take_over, agent=User.objects.get(username="admin"), conversation_public_id=conversation)
    expect(frame.get_by_role("log", name="Conversation")).to_contain_text("took over the conversation")
    expect(frame.locator(".pv-typing")).to_be_hidden()
    expect(frame.locator("body")).to_have_attribute("data-state", "active")
    shot(page, "issue16-typing-cleared-on-take-over")
