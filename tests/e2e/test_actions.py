"""Dashboard → Actions in Chromium against the real stack: an owner creates a webhook action, a
visitor taps "Talk to a human" in the real widget on the demo site, and the signed delivery shows
in the log (and an independent Standard Webhooks verifier accepts what the receiver got)."""

from __future__ import annotations

import re
import time

from playwright.sync_api import BrowserContext, Page, expect
from standardwebhooks import Webhook

from actions.services import action_create, action_pause
from pivra.stack import AppProcesses
from tests.e2e.conftest import screenshot
from tests.e2e.widget_helpers import open_widget, seed_demo
from tests.factories import make_chatbot, make_user, make_workspace
from tests.test_actions_support import Receiver, Reply


def test_an_owner_creates_a_webhook_action_and_a_widget_handoff_shows_in_its_log(
    page: Page, second_context: BrowserContext, live_stack: AppProcesses
) -> None:
    # The demo workspace: its bot is the one /demo/ embeds, so the real widget talks to it; "admin"
    # owns it and Alice and Bob are its agents (every seat of its Starter plan).
    bot = seed_demo()
    workspace = bot.workspace
    returns = make_chatbot(workspace, "Returns desk")

    # The CRM takes the real event, then fails the test send once (HTTP 500).
    with Receiver(Reply(200), Reply(500, body=b'{"error": "crm is down"}')) as receiver:
        page.goto("/accounts/login/?next=/dashboard/actions/")
        page.get_by_label("Username").fill("admin")
        page.get_by_label("Password").fill("e2e-pass-1")
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Actions", exact=True)).to_be_visible()
        expect(page.get_by_text("No actions yet")).to_be_visible()
        screenshot(page, "actions-empty")

        page.get_by_role("link", name="+ Create your first action").click()
        page.get_by_label("Name").fill("Ops CRM webhook")
        page.get_by_label("Chatbot").select_option(label="Demo bot")
        page.get_by_text("Handoff claimed", exact=True).click()
        page.get_by_text("Webhook", exact=True).click()
        page.get_by_label("URL").fill(receiver.url)
        expect(page.get_by_label("Recipients")).to_be_hidden()  # only the chosen kind's fields
        screenshot(page, "actions-new")
        page.get_by_role("button", name="Create action").click()

        expect(page.get_by_role("heading", name="Ops CRM webhook")).to_be_visible()
        secret = page.locator("[data-signing-secret]").inner_text().strip()
        assert secret.startswith("whsec_")
        screenshot(page, "actions-secret-once")

        # A visitor on the demo site taps "Talk to a human" in the widget, in their own browser.
        shop = second_context.new_page()
        frame = open_widget(shop)
        frame.get_by_role("button", name="Talk to a human").click()
        expect(frame.locator("body")).to_have_attribute("data-state", "pending")
        expect(frame.get_by_text("Waiting for a team member…")).to_be_visible()
        screenshot(shop, "actions-widget-handoff")

        # Reload the log until the delivery shows as delivered (bounded by expect's timeout).
        row = page.locator("tr[data-delivery]").filter(has_text="conversation.escalated")

        def delivered() -> bool:
            page.reload()
            return row.filter(has_text="Delivered").count() == 1

        deadline = time.monotonic() + 30
        while not delivered() and time.monotonic() < deadline:
            page.wait_for_timeout(500)
        expect(row).to_contain_text("Delivered")
        expect(row).to_contain_text("200")
        expect(row).to_contain_text("1 of 8")

        assert len(receiver.completed) == 1
        (hit,) = receiver.completed
        payload = Webhook(secret).verify(hit.body, hit.headers)
        assert payload["type"] == "conversation.escalated"
        assert payload["data"]["chatbot"]["name"] == "Demo bot"
        assert payload["data"]["handoff"]["trigger"] == "button"
        assert payload["data"]["visitor"]["current_page"] == f"{live_stack.http_url}/demo/"
        expect(row).to_contain_text(hit.headers["webhook-id"])

        # "Send test": the receiver answers 500, the log says so; a manual redelivery then succeeds.
        page.get_by_role("button", name="Send test").click()
        test_row = page.locator("tr[data-delivery]").filter(has_text="Test")
        expect(test_row).to_contain_text("Failed", timeout=30_000)  # the page refreshes itself
        expect(test_row).to_contain_text("HTTP 500")
        screenshot(page, "actions-delivery-log")
        test_row.get_by_role("button", name="Redeliver").click()
        expect(test_row).to_contain_text("Delivered", timeout=30_000)
        expect(test_row).to_contain_text("2 of 2")
        assert len({h.headers["webhook-id"] for h in receiver.hits[1:]}) == 1  # same id on redelivery

        # Two more actions, so the list looks like a workspace in use.
        action_create(
            workspace=workspace,
            chatbot=bot,
            name="Support inbox",
            kind="email",
            events=["conversation.escalated", "handoff.timed_out", "lead.captured"],
            recipients=["support@northwind.example", "ops@northwind.example"],
        )
        returns_slack = action_create(
            workspace=workspace,
            chatbot=returns,
            name="#returns channel",
            kind="slack",
            events=["conversation.escalated", "handoff.resolved"],
            url="https://hooks.slack.com/services/T000/B000/XXXX",
        )
        action_pause(action=returns_slack, reason="Paused by admin.")
        page.get_by_role("complementary", name="Main navigation").get_by_role("link", name="Actions").click()
        expect(page.get_by_role("link", name="Ops CRM webhook")).to_be_visible()
        expect(page.get_by_text(re.compile(r"1\s+delivered"))).to_be_visible()
        screenshot(page, "actions-list")

        page.get_by_role("link", name="Ops CRM webhook").click()
        test_row.locator(".act-event a").click()
        expect(page.get_by_role("heading", name="Attempts")).to_be_visible()
        screenshot(page, "actions-delivery-detail")


def test_a_free_workspace_sees_the_locked_state_with_an_upgrade_prompt(page: Page, live_stack: AppProcesses) -> None:
    owner = make_user("frieda", password="e2e-pass-1")
    make_workspace("Frieda's Bakery", owner=owner, plan="free")
    page.goto("/accounts/login/?next=/dashboard/actions/")
    page.get_by_label("Username").fill("frieda")
    page.get_by_label("Password").fill("e2e-pass-1")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Actions are available on Starter plan and above")).to_be_visible()
    expect(page.get_by_text("Starter", exact=True)).to_be_visible()
    expect(page.get_by_role("link", name="+ New action")).to_have_count(0)
    screenshot(page, "actions-locked")
