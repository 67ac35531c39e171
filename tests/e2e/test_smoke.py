from __future__ import annotations

import httpx
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from chatbots.demo import demo_seed
from pivra.stack import AppProcesses
from tests.e2e.conftest import screenshot


def test_staff_logs_in_and_the_dashboard_renders(page: Page, live_stack: AppProcesses) -> None:
    demo_seed(password="e2e-pass-1")
    page.goto("/dashboard/")
    expect(page).to_have_url(f"{live_stack.http_url}/accounts/login/?next=/dashboard/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("e2e-pass-1")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Demo")).to_be_visible()
    expect(page.get_by_role("cell", name="Demo bot")).to_be_visible()
    screenshot(page, "dashboard-overview")

    page.get_by_role("link", name="Chatbot → Settings").click()
    expect(page.get_by_role("heading", name="Human Handoff")).to_be_visible()
    expect(page.get_by_role("switch", name="Handoff enabled")).to_be_checked()
    page.get_by_label("Response timeout (seconds)").fill("240")
    page.get_by_role("button", name="Save settings").first.click()
    expect(page.get_by_text("Human handoff settings saved.")).to_be_visible()
    screenshot(page, "dashboard-settings")

    page.goto("/admin/")
    expect(page.get_by_role("link", name="Subscriptions")).to_be_visible()
    assert User.objects.filter(username="admin", is_staff=True).exists()


def test_a_wrong_password_is_refused_with_a_readable_message(page: Page) -> None:
    demo_seed(password="e2e-pass-1")
    page.goto("/accounts/login/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill("wrong")
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("alert")).to_contain_text("didn't match")


def test_healthz_is_green_on_the_running_stack(live_stack: AppProcesses, transactional_db: None) -> None:
    # The worker needs a moment after daphne answers: poll briefly rather than assume.
    import time

    deadline = time.monotonic() + 30
    while True:
        response = httpx.get(f"{live_stack.http_url}/healthz", timeout=10)
        if response.status_code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert response.status_code == 200, response.text
    checks = response.json()["checks"]
    assert {name: check["status"] for name, check in checks.items()} == {
        "database": "ok",
        "redis": "ok",
        "worker": "ok",
    }
    assert checks["database"]["vendor"] in ("postgresql", "sqlite")


def test_the_demo_site_loads(page: Page) -> None:
    demo_seed(password="e2e-pass-1")
    page.goto("/demo/")
    expect(page.get_by_role("heading", name="Gear for every trail.")).to_be_visible()
