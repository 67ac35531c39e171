"""The visitor's widget on the demo site, against the real stack (daphne, Celery worker and beat)."""

from __future__ import annotations

from playwright.sync_api import BrowserContext, Page, expect

from conversations.models import Event
from pivra.stack import AppProcesses
from tests.e2e.conftest import screenshot
from tests.e2e.widget_helpers import open_widget, seed_demo, send


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


def test_the_widget_resumes_after_the_server_drops_its_socket_with_nothing_missing_or_doubled(
    page: Page, live_stack: AppProcesses
) -> None:
    seed_demo()
    frame = open_widget(page)
    log = frame.get_by_role("log", name="Conversation")
    expect(frame.locator("body")).to_have_attribute("data-connected", "true")
    # The server dies right as the visitor sends: the frame may or may not have reached it, and the
    # worker may be answering. The widget must resend with the same client id and catch up.
    send(frame, "What is your return policy?")
    live_stack.kill("daphne")
    live_stack.start("daphne")
    send(frame, "Do your products have a warranty?")
    expect(log).to_contain_text("return any unused item within 60 days")
    expect(log).to_contain_text("lifetime warranty")
    expect(log.locator(".pv-row.pv-visitor[data-seq]")).to_have_count(2)
    expect(log.locator(".pv-row.pv-ai[data-seq]")).to_have_count(2)  # the greeting has no seq
    seqs = log.locator(".pv-row[data-seq]").evaluate_all("rows => rows.map(r => Number(r.dataset.seq))")
    assert seqs == sorted(seqs) and len(seqs) == len(set(seqs))
    assert Event.objects.filter(author="visitor").count() == 2


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
