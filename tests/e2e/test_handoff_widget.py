"""The brief's visitor flows in the real widget; the agent acts through the handoff services."""

from __future__ import annotations

from django.contrib.auth.models import User
from playwright.sync_api import Browser, BrowserContext, Page, expect

from chatbots.models import Chatbot
from chatbots.services import chatbot_update_handoff_settings, subscription_set
from conversations.models import Conversation
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from handoff.transitions.reply import handoff_reply
from handoff.transitions.resolve import handoff_resolve
from pivra.stack import AppProcesses
from tests.e2e.conftest import screenshot
from tests.e2e.widget_helpers import AgentConsole, off_thread, open_widget, seed_demo, send


def _conversation_id() -> str:
    return str(Handoff.objects.latest("requested_at").conversation.public_id)


def test_button_escalation_claim_reply_resolve_and_a_new_conversation(page: Page) -> None:
    seed_demo()
    alice = User.objects.get(username="alice")
    frame = open_widget(page)
    body = frame.locator("body")
    send(frame, "Hi, I have a question about my order")
    log = frame.get_by_role("log", name="Conversation")
    expect(log.locator(".pv-row.pv-ai[data-seq]")).to_have_count(1)  # the AI's fallback answer
    frame.get_by_role("button", name="Talk to a human").click()

    expect(body).to_have_attribute("data-state", "pending")
    expect(frame.get_by_text("Waiting for a team member…")).to_be_visible()
    expect(frame.get_by_text("Connecting you with the team now…")).to_be_visible()
    screenshot(page, "widget-pending")
    assert Handoff.objects.get().trigger == "button"

    conversation = _conversation_id()
    off_thread(handoff_claim, agent=alice, conversation_public_id=conversation)
    expect(body).to_have_attribute("data-state", "active")
    expect(frame.get_by_text("● Live Agent")).to_be_visible()
    off_thread(
        handoff_reply,
        agent=alice,
        conversation_public_id=conversation,
        text="Hi! I'm Alice, happy to help.",
        client_id="r1",
    )
    expect(log).to_contain_text("Hi! I'm Alice, happy to help.")
    send(frame, "My order number is 1234")
    expect(log).to_contain_text("My order number is 1234")
    screenshot(page, "widget-live-agent")

    off_thread(handoff_resolve, agent=alice, conversation_public_id=conversation)
    expect(body).to_have_attribute("data-state", "resolved")
    expect(frame.get_by_text("Conversation resolved ✓")).to_be_visible()
    screenshot(page, "widget-resolved")
    frame.get_by_role("button", name="Start new conversation").click()
    expect(body).to_have_attribute("data-state", "ai")
    send(frame, "What is your return policy?")
    expect(log).to_contain_text("60 days")
    old = Conversation.objects.get(public_id=conversation)
    assert old.status == "closed"
    assert list(old.events.filter(kind="message").values_list("author", flat=True)) == [
        "visitor",
        "ai",
        "agent",
        "visitor",
    ]


def test_a_keyword_asks_first_and_no_thanks_gets_the_ai_answer(page: Page) -> None:
    seed_demo()
    frame = open_widget(page)
    body = frame.locator("body")
    send(frame, "Can I speak to someone about shipping cost?")
    expect(frame.get_by_text("Would you like to speak with a team member?")).to_be_visible()
    frame.get_by_role("button", name="No thanks").click()
    log = frame.get_by_role("log", name="Conversation")
    expect(log).to_contain_text("Shipping is free on orders over $75")
    expect(body).to_have_attribute("data-state", "ai")

    send(frame, "Actually, can I talk to a HUMAN?")
    expect(frame.get_by_role("button", name="Yes, connect me")).to_have_count(2)  # a second offer
    frame.get_by_role("button", name="Yes, connect me").last.click()
    expect(body).to_have_attribute("data-state", "pending")
    assert Handoff.objects.get().trigger == "keyword"


def _time_out_after_five_seconds(bot: Chatbot, *, busy_message: str) -> None:
    chatbot_update_handoff_settings(
        chatbot=bot,
        enabled=True,
        keywords=bot.handoff_keywords,
        waiting_message=bot.handoff_waiting_message,
        timeout_seconds=5,
        busy_message=busy_message,
    )


def test_team_busy_phone_capture_continue_and_a_late_claim_brings_the_agent(page: Page) -> None:
    bot = seed_demo()
    _time_out_after_five_seconds(
        bot, busy_message="Our team is currently busy… leave your number and we'll call you back."
    )
    bob = User.objects.get(username="bob")
    frame = open_widget(page)
    body = frame.locator("body")
    frame.get_by_role("button", name="Talk to a human").click()
    expect(body).to_have_attribute("data-state", "pending")
    # No one claims within 5 s: the timer (or the sweep) turns it to Team busy.
    expect(body).to_have_attribute("data-state", "busy", timeout=20_000)
    expect(frame.get_by_text("leave your number and we'll call you back")).to_be_visible()

    phone = frame.get_by_label("Mobile number")
    phone.fill("12")
    frame.get_by_role("button", name="Send").click()
    expect(frame.locator("#pv-phone-error")).to_be_visible()
    phone.fill("+44 7911 123456")
    frame.get_by_role("button", name="Send").click()
    expect(frame.get_by_text("+447911123456")).to_be_visible()
    screenshot(page, "widget-team-busy")
    busy_conversation = Conversation.objects.get(handoff__isnull=False)
    assert busy_conversation.lead["phone"] == "+447911123456"

    frame.get_by_role("button", name="Continue with AI").click()
    expect(body).to_have_attribute("data-state", "ai")
    send(frame, "How much does shipping cost?")
    expect(frame.get_by_role("log", name="Conversation")).to_contain_text("free on orders over $75")

    # A late claim of the busy conversation upgrades the widget to Live Agent by itself.
    off_thread(handoff_claim, agent=bob, conversation_public_id=str(busy_conversation.public_id))
    expect(body).to_have_attribute("data-state", "active")
    expect(frame.get_by_text("● Live Agent")).to_be_visible()
    off_thread(
        handoff_reply,
        agent=bob,
        conversation_public_id=str(busy_conversation.public_id),
        text="Sorry for the wait — Bob here.",
        client_id="late-1",
    )
    expect(frame.get_by_role("log", name="Conversation")).to_contain_text("Bob here")
    screenshot(page, "widget-late-claim")
    # And it survives a reload.
    page.reload()
    page.get_by_role("button", name="Open chat").click()
    expect(page.frame_locator("iframe[title='Chat']").locator("body")).to_have_attribute("data-state", "active")


def test_the_free_plan_shows_no_button_and_the_api_refuses(page: Page, live_stack) -> None:
    import httpx

    bot: Chatbot = seed_demo()
    subscription_set(workspace=bot.workspace, plan_code="free")
    frame = open_widget(page)
    expect(frame.get_by_role("textbox", name="Message")).to_be_visible()
    expect(frame.get_by_role("button", name="Talk to a human")).to_have_count(0)
    session = httpx.post(f"{live_stack.http_url}/api/widget/session", json={"public_key": bot.public_key}).json()
    refused = httpx.post(
        f"{live_stack.http_url}/api/widget/handoff",
        json={"client_id": "x"},
        headers={"Authorization": f"Bearer {session['token']}"},
    )
    assert refused.status_code == 403
    assert refused.json() == {
        "code": "handoff_unavailable",
        "detail": "Talking to a team member is not available in this chat.",
    }


def test_team_busy_reads_a_national_mobile_number_in_the_browsers_region_and_refuses_a_landline(
    browser: Browser, live_stack: AppProcesses, second_context: BrowserContext
) -> None:
    bot = seed_demo()
    _time_out_after_five_seconds(
        bot, busy_message="Our team is busy right now. Leave your mobile number and we'll call you back."
    )
    agent = AgentConsole(second_context, "alice")
    british = browser.new_context(base_url=live_stack.http_url, locale="en-GB", viewport={"width": 1280, "height": 800})
    try:
        page = british.new_page()
        frame = open_widget(page)
        body = frame.locator("body")
        frame.get_by_role("button", name="Talk to a human").click()
        expect(body).to_have_attribute("data-state", "busy", timeout=20_000)
        (busy,) = agent.get("/handoffs?status=busy")
        conversation = busy["conversation"]

        # A London landline: valid, but nobody can text it back.
        phone = frame.get_by_label("Mobile number")
        phone.fill("020 7946 0018")
        frame.get_by_role("button", name="Send").click()
        error = frame.locator("#pv-phone-error")
        expect(error).to_have_text("That looks like a landline. Please enter a mobile number.")
        expect(phone).to_have_attribute("aria-invalid", "true")
        expect(phone).to_have_value("020 7946 0018")  # kept for correcting
        screenshot(page, "widget-phone-landline")
        seen = agent.get(f"/conversations/{conversation}")
        assert seen["lead"] == {}
        assert not [e for e in seen["events"] if e["kind"] == "lead.captured"]

        # A UK mobile written the national way: read as British because the browser says en-GB.
        phone.fill("07911 123456")
        expect(error).to_have_text("")
        frame.get_by_role("button", name="Send").click()
        expect(frame.get_by_text("Thanks — we'll contact you at +447911123456")).to_be_visible()
        screenshot(page, "widget-phone-saved-en-gb")
        seen = agent.get(f"/conversations/{conversation}")
        assert seen["visitor"]["locale"] == "en-GB"
        assert seen["lead"]["phone"] == "+447911123456"
        assert [e["data"] for e in seen["events"] if e["kind"] == "lead.captured"] == [{"phone": "+447911123456"}]
    finally:
        british.close()
