"""The dashboard's live updates over the console socket: they resume after the socket drops, with
nothing missed or doubled, and their delays are measured (written to test-artifacts, not asserted).
"""

from __future__ import annotations

import time
import uuid

from playwright.sync_api import Browser, BrowserContext, Page, expect

from chatbots.models import Chatbot
from conversations.models import Conversation, Event
from handoff.models import Handoff
from handoff.transitions.request import handoff_request
from pivra.stack import AppProcesses
from tests.e2e.console_helpers import (
    LIVE,
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
    thread_seqs,
    visitor_context,
    watch_for,
)
from tests.e2e.widget_helpers import off_thread, open_widget

CATCH_UP = 45_000  # ms: daphne restarts and the client's backoff (up to 15 s) comes round again

# Count the console's sockets from the page, without touching the app: a WebSocket that remembers
# every instance, so the test knows when the old one closed and a new one opened.
TRACK_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  const sockets = (window.__pivraSockets = []);
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      if (String(args[0]).includes("/ws/console/")) sockets.push(this);
    }
  };
})();
"""
OPEN_SOCKETS = "() => window.__pivraSockets.filter((s) => s.readyState === WebSocket.OPEN).length"


def _wait_connected(page: Page, *, after: int = 0) -> None:
    """One open console socket, and (after a drop) a newer one than the ``after`` first."""
    page.wait_for_function(
        f"(after) => window.__pivraSockets.length > after && ({OPEN_SOCKETS})() === 1", arg=after, timeout=CATCH_UP
    )


def _wait_dropped(page: Page) -> int:
    page.wait_for_function(f"() => ({OPEN_SOCKETS})() === 0", timeout=LIVE)
    return int(page.evaluate("() => window.__pivraSockets.length"))


def _events_meanwhile(bot: Chatbot, conversation: str) -> str:
    """While no console socket is up: two visitor messages in the watched conversation and a new
    handoff elsewhere. Their broadcasts reach no one."""
    watched = Conversation.objects.select_related("visitor").get(public_id=conversation)
    say(watched.visitor, watched, "Hello? Is anyone there? We're 24 scouts.")
    say(watched.visitor, watched, "We'd need 8 tents by the 14th.")
    visitor, fresh = seeded_visitor(bot, page="https://northwind.example/packs")
    say(visitor, fresh, "My pack's hip belt buckle broke, can a person help?")
    handoff_request(visitor=visitor, conversation_public_id=str(fresh.public_id), trigger="button")
    return str(fresh.public_id)


def _handoff_rows(page: Page) -> list[str]:
    return list(page.locator("[data-conversation]").evaluate_all("rows => rows.map(r => r.dataset.conversation)"))


def _stored_seqs(conversation: str) -> list[int]:
    return list(
        Event.objects.filter(conversation__public_id=conversation).order_by("seq").values_list("seq", flat=True)
    )


def test_the_handoff_tab_and_a_conversation_catch_up_after_the_socket_drops_with_no_gap_or_double(
    context: BrowserContext, live_stack: AppProcesses
) -> None:
    bot = seed()
    context.add_init_script(TRACK_SOCKETS)
    errors: list[str] = []
    queue = handoff_queue(context, "alice", errors)
    waiting = str(Handoff.objects.get(status="pending").conversation.public_id)
    view = context.new_page()
    view.on("pageerror", lambda error: errors.append(f"view: {error}"))
    view.goto(f"/dashboard/conversations/{waiting}/")
    for page in (queue, view):
        _wait_connected(page)
        expect(page.locator("[data-unclaimed-badge]").first).to_have_text("2")
    expect(view.locator("[data-thread] [data-seq]")).to_have_count(len(_stored_seqs(waiting)))
    before = _handoff_rows(queue)
    assert len(before) == 3

    # The server dies: both pages lose their socket, and the events happen while they are away.
    live_stack.kill("daphne")
    dropped = {page: _wait_dropped(page) for page in (queue, view)}
    fresh = off_thread(_events_meanwhile, bot=bot, conversation=waiting)
    live_stack.start("daphne")

    for page in (queue, view):
        _wait_connected(page, after=dropped[page])
    # The thread replays the gap: every stored event once, in order.
    expect(view.locator(".ev-visitor .ev-bubble").last).to_have_text("We'd need 8 tents by the 14th.", timeout=CATCH_UP)
    stored = _stored_seqs(waiting)
    expect(view.locator("[data-thread] [data-seq]")).to_have_count(len(stored), timeout=LIVE)
    assert thread_seqs(view) == stored
    # The list refetches: the new handoff once, nothing else doubled; the badge and title agree.
    expect(row(queue, fresh)).to_have_count(1, timeout=CATCH_UP)
    expect(row(queue, fresh).locator("[data-badge]")).to_have_text("Waiting")
    expect(row(queue, waiting)).to_contain_text("8 tents by the 14th", timeout=LIVE)
    after = _handoff_rows(queue)
    assert sorted(after) == sorted([*before, fresh]) and len(after) == len(set(after))
    for page in (queue, view):
        expect(page.locator("[data-unclaimed-badge]").first).to_have_text("3", timeout=CATCH_UP)
    expect(queue).to_have_title("(3) Conversations · Pivra")
    shot(queue, "console-reconnected-handoff-tab")

    # And it stays live on the new socket: the next message arrives once, without a reload.
    off_thread(_say_in, conversation=waiting, text="Also, do you do group discounts?")
    expect(view.locator(".ev-visitor .ev-bubble").last).to_have_text("Also, do you do group discounts?", timeout=LIVE)
    stored = _stored_seqs(waiting)
    expect(view.locator("[data-thread] [data-seq]")).to_have_count(len(stored), timeout=LIVE)
    assert thread_seqs(view) == stored
    expect(row(queue, waiting)).to_contain_text("group discounts", timeout=LIVE)
    shot(view, "console-reconnected-conversation")
    assert errors == []


def _say_in(conversation: str, text: str) -> None:
    watched = Conversation.objects.select_related("visitor").get(public_id=conversation)
    say(watched.visitor, watched, text)


ROUNDS = 3


def test_new_handoffs_and_claims_reach_the_other_agents_live(
    browser: Browser, context: BrowserContext, second_context: BrowserContext, live_stack: AppProcesses
) -> None:
    """A few rounds of "a visitor taps Talk to a human in the widget; Alice claims it", with Bob
    watching his Handoff tab and the conversation: each live change is timed, for the report."""
    seed()
    errors: list[str] = []
    alice_queue = handoff_queue(context, "alice", errors)
    bob_queue = handoff_queue(second_context, "bob", errors)
    alice_view = context.new_page()
    bob_view = second_context.new_page()
    appeared: list[dict[str, object]] = []
    claimed: list[dict[str, object]] = []
    for index in range(ROUNDS):
        shopper = visitor_context(browser, live_stack.http_url)
        try:
            known = set(Conversation.objects.values_list("public_id", flat=True))
            frame = open_widget(shopper.new_page())
            conversation = _new_conversation(known)  # the widget's session starts one
            for page in (alice_queue, bob_queue):
                watch_for(page, f"new-{index}", f'[data-conversation="{conversation}"] [data-badge]', "Waiting")
            human = frame.get_by_role("button", name="Talk to a human")
            stamp_click(human, "human")
            human.click()
            expect(frame.locator("body")).to_have_attribute("data-state", "pending")
            asked = clicked_at(frame.locator("body"), "human")
            for name, page in (("alice", alice_queue), ("bob", bob_queue)):
                expect(row(page, conversation).locator("[data-badge]")).to_have_text("Waiting", timeout=LIVE)
                appeared.append(latency_sample(seen_at(page, f"new-{index}") - asked, f"{name}'s Handoff tab"))

            bob_view.goto(f"/dashboard/conversations/{conversation}/")
            alice_view.goto(f"/dashboard/conversations/{conversation}/")
            expect(bob_view.get_by_role("button", name="Claim")).to_be_visible()
            listed = f'[data-conversation="{conversation}"] [data-badge]'
            watch_for(bob_view, f"claim-{index}", "[data-badge]", "Claimed by Alice")
            watch_for(bob_queue, f"claim-{index}", listed, "Claimed by Alice")
            stamp_click(alice_view.locator("[data-claim]"), "claim")
            alice_view.get_by_role("button", name="Claim").click()
            expect(bob_view.locator("[data-badge]")).to_have_text("Claimed by Alice", timeout=LIVE)
            expect(bob_queue.locator(listed)).to_have_text("Claimed by Alice", timeout=LIVE)
            expect(frame.locator("body")).to_have_attribute("data-state", "active", timeout=LIVE)
            started = clicked_at(alice_view.locator("body"), "claim")
            claimed.append(latency_sample(seen_at(bob_view, f"claim-{index}") - started, "bob's conversation view"))
            claimed.append(latency_sample(seen_at(bob_queue, f"claim-{index}") - started, "bob's Handoff tab"))
        finally:
            shopper.close()
    record_latency("test_console_live.rounds", "new_handoff_appears", appeared)
    record_latency("test_console_live.rounds", "claim_seen_by_other_agent", claimed)
    assert len(appeared) == len(claimed) == 2 * ROUNDS
    expect(bob_queue.locator("[data-unclaimed-badge]")).to_have_text("2")  # the seeded two; ours are claimed
    assert errors == []


def _new_conversation(known: set[uuid.UUID]) -> str:
    deadline = time.monotonic() + 15
    while time.monotonic() < deadline:
        found = Conversation.objects.exclude(public_id__in=known).values_list("public_id", flat=True)
        if found:
            return str(found[0])
        time.sleep(0.1)
    raise AssertionError("the widget's session started no conversation")
