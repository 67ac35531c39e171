"""The visitor's widget on the demo site, against the real stack (daphne, Celery worker and beat)."""

from __future__ import annotations

import time
from collections.abc import Callable

from playwright.sync_api import BrowserContext, Page, expect

from chatbots.models import Chatbot
from conversations.models import Event
from pivra.stack import AppProcesses
from tests.e2e.conftest import screenshot
from tests.e2e.widget_helpers import StreamingLLM, open_widget, seed_demo, send

LATER = ["They pack down ", "to the size of a water bottle."]
LATER_TEXT = "".join(LATER)
# A WebSocket that fails the way a blocked upgrade does: created, then error and close (1006),
# never open. It counts the attempts so the test can see the widget give up on sockets.
FAILING_WEBSOCKET = """
(() => {
  window.__socketsTried = 0;
  class BlockedSocket extends EventTarget {
    constructor(url) {
      super();
      window.__socketsTried += 1;
      this.url = String(url);
      this.readyState = 0;
      this.onopen = this.onmessage = this.onerror = this.onclose = null;
      setTimeout(() => {
        this.readyState = 3;
        const error = new Event("error");
        if (this.onerror) this.onerror(error);
        this.dispatchEvent(error);
        const close = new CloseEvent("close", { code: 1006, wasClean: false });
        if (this.onclose) this.onclose(close);
        this.dispatchEvent(close);
      }, 20);
    }
    send() { throw new DOMException("WebSocket is not open", "InvalidStateError"); }
    close() {}
  }
  Object.assign(BlockedSocket, { CONNECTING: 0, OPEN: 1, CLOSING: 2, CLOSED: 3 });
  window.WebSocket = BlockedSocket;
})();
"""


def _wait_for(predicate: Callable[[], bool], what: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting until {what}"
        time.sleep(0.2)


def test_a_visitor_gets_the_knowledge_answer_and_the_history_survives_a_reload(page: Page) -> None:
    seed_demo()
    frame = open_widget(page)
    expect(frame.get_by_role("heading", name="Demo bot")).to_be_visible()
    send(frame, "How much does shipping cost?")
    log = frame.get_by_role("log", name="Conversation")
    expect(log).to_contain_text("Shipping is free on orders over $75")
    screenshot(page, "widget-ai-answer")

    page.reload()
    page.get_by_role("button", name="Open chat").click()
    expect(log).to_contain_text("How much does shipping cost?")
    expect(log).to_contain_text("Shipping is free on orders over $75")
    expect(log.locator(".pv-row.pv-visitor")).to_have_count(1)


def test_the_server_dies_while_the_bot_streams_its_answer_and_the_widget_resumes_with_nothing_missing_or_doubled(
    page: Page, live_stack: AppProcesses
) -> None:
    bot = seed_demo()
    with StreamingLLM(first=["Our tents ", "are double-walled"], rest=[" and pitch in minutes."], later=LATER) as llm:
        Chatbot.objects.filter(pk=bot.pk).update(
            ai_provider=Chatbot.Provider.OPENAI, llm_base_url=llm.url, llm_api_key="sk-e2e", llm_model="e2e-model"
        )
        frame = open_widget(page)
        body = frame.locator("body")
        log = frame.get_by_role("log", name="Conversation")
        expect(body).to_have_attribute("data-connected", "true")
        send(frame, "Tell me about your tents")
        expect(log.locator(".pv-row.pv-visitor[data-seq]")).to_have_count(1)  # stored and acknowledged
        # The first tokens are on screen: the worker is mid-answer, holding the provider's stream open.
        expect(frame.locator(".pv-draft")).to_contain_text("Our tents are double-walled")

        live_stack.kill("daphne")
        expect(body).to_have_attribute("data-connected", "false")
        # While no server is up, the answer finishes and is stored (its pushes reach nobody), and the
        # visitor writes again: the widget keeps that message until it can send it.
        llm.release.set()
        _wait_for(lambda: Event.objects.filter(author="ai").exists(), "the worker stored the streamed answer")
        send(frame, "Do they fit in a backpack?")
        expect(log.locator(".pv-row.pv-visitor.pv-sending")).to_have_count(1)
        expect(frame.get_by_role("status").filter(has_text="Reconnecting…")).to_be_visible()
        screenshot(page, "widget-server-down-mid-answer")
        live_stack.start("daphne")

        expect(body).to_have_attribute("data-connected", "true", timeout=30_000)
        answer = "Our tents are double-walled and pitch in minutes."
        expect(log.locator(".pv-row.pv-ai[data-seq] .pv-bubble").first).to_have_text(answer)
        expect(log).to_contain_text(LATER_TEXT)
        expect(frame.get_by_text(answer)).to_have_count(1)  # in the log once, and no draft left beside it
        expect(log.locator(".pv-row.pv-visitor")).to_have_count(2)
        expect(log.locator(".pv-row.pv-visitor", has_text="Tell me about your tents")).to_have_count(1)
        expect(log.locator(".pv-row.pv-visitor", has_text="Do they fit in a backpack?")).to_have_count(1)
        expect(log.locator(".pv-row.pv-ai[data-seq]")).to_have_count(2)  # the greeting has no seq
        for leftover in (".pv-sending", ".pv-failed", ".pv-draft"):
            expect(frame.locator(leftover)).to_have_count(0)
        seqs = log.locator(".pv-row[data-seq]").evaluate_all("rows => rows.map(r => Number(r.dataset.seq))")
        assert seqs == sorted(seqs) and len(seqs) == len(set(seqs)) == 4
        screenshot(page, "widget-resumed-after-restart")
    assert list(Event.objects.order_by("seq").values_list("author", "text")) == [
        ("visitor", "Tell me about your tents"),
        ("ai", answer),
        ("visitor", "Do they fit in a backpack?"),
        ("ai", LATER_TEXT),
    ]
    assert llm.requests == 2


def test_a_websocket_that_cannot_connect_makes_the_widget_switch_to_sse_by_itself(page: Page) -> None:
    seed_demo()
    # As behind a proxy that refuses WebSocket upgrades: every socket fails before it opens.
    page.add_init_script(FAILING_WEBSOCKET)
    frame = open_widget(page)
    body = frame.locator("body")
    expect(body).to_have_attribute("data-transport", "sse")
    expect(body).to_have_attribute("data-connected", "true")
    attempts = body.evaluate("() => window.__socketsTried")
    assert attempts >= 1
    send(frame, "What is your return policy?")
    log = frame.get_by_role("log", name="Conversation")
    expect(log).to_contain_text("return any unused item within 60 days")
    expect(log.locator(".pv-row.pv-visitor")).to_have_count(1)
    for leftover in (".pv-sending", ".pv-failed"):
        expect(frame.locator(leftover)).to_have_count(0)
    # It stays on SSE and stops trying sockets; the history comes back after a reload too.
    assert body.evaluate("() => window.__socketsTried") == attempts
    page.reload()
    page.get_by_role("button", name="Open chat").click()
    expect(body).to_have_attribute("data-transport", "sse")
    expect(log).to_contain_text("return any unused item within 60 days")
    screenshot(page, "widget-sse-after-failed-socket")


def test_without_websocket_the_sse_fallback_carries_the_same_conversation(page: Page, context: BrowserContext) -> None:
    seed_demo()
    frame = open_widget(page)
    send(frame, "What are your opening hours?")
    log = frame.get_by_role("log", name="Conversation")
    expect(log).to_contain_text("Monday to Friday")

    no_socket = context.new_page()
    no_socket.add_init_script("delete window.WebSocket;")
    frame2 = open_widget(no_socket)
    expect(frame2.locator("body")).to_have_attribute("data-transport", "sse")
    log2 = frame2.get_by_role("log", name="Conversation")
    expect(log2).to_contain_text("What are your opening hours?")
    send(frame2, "How do I choose the right tent size?")
    expect(log2).to_contain_text("room for gear")
    # The first page (still on its socket) sees the same conversation grow.
    expect(log).to_contain_text("room for gear")
    screenshot(no_socket, "widget-sse-fallback")


def test_the_widget_fills_a_phone_screen_and_is_keyboard_operable(
    browser, live_stack: AppProcesses, transactional_db: None
) -> None:
    seed_demo()
    phone = browser.new_context(base_url=live_stack.http_url, viewport={"width": 360, "height": 640})
    try:
        page = phone.new_page()
        page.goto("/demo/")
        launcher = page.get_by_role("button", name="Open chat")
        launcher.focus()
        page.keyboard.press("Enter")  # keyboard, not a click
        frame = page.frame_locator("iframe[title='Chat']")
        box = frame.get_by_role("textbox", name="Message")
        expect(box).to_be_editable()
        size = page.locator("iframe[title='Chat']").bounding_box()
        assert size is not None and size["width"] >= 350 and size["height"] >= 600
        box.fill("<b>Do you ship abroad?</b>")  # rendered as text, never as HTML
        box.press("Enter")
        log = frame.get_by_role("log", name="Conversation")
        expect(log).to_contain_text("<b>Do you ship abroad?</b>")
        expect(log.locator("b")).to_have_count(0)
        expect(log.locator(".pv-row.pv-ai[data-seq]")).to_have_count(1)
        screenshot(page, "widget-phone")
    finally:
        phone.close()
