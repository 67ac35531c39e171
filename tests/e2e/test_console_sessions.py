"""Sessions end everywhere, through daphne and the real console page: the console socket of an
agent who is deactivated, whose password changes or who logs out (in another tab) is closed by the
server within 5 s with code 4401; the page says "Your session ended. Sign in again." and does not
reconnect. The agent's other browser keeps its own session and socket after a logout. The measured
delays go to test-artifacts/console-session-end.json."""

from __future__ import annotations

import json
import time

from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect

from pivra.stack import AppProcesses
from tests.e2e.conftest import ARTIFACTS
from tests.e2e.console_helpers import login, seed
from tests.e2e.widget_helpers import off_thread

WITHIN = 5.0  # seconds: the acceptance's "within 5 s"
MEASURED = ARTIFACTS / "console-session-end.json"

# Remember every console socket of the page and how each one ended, without touching the app.
TRACK_SOCKETS = """
(() => {
  const Native = window.WebSocket;
  const sockets = (window.__pivraSockets = []);
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      if (!String(args[0]).includes("/ws/console/")) return;
      const record = { socket: this, frames: [], closed: null };
      sockets.push(record);
      this.addEventListener("message", (m) => record.frames.push(JSON.parse(m.data).type));
      this.addEventListener("close", (e) => (record.closed = e.code));
    }
  };
})();
"""
CONNECTED = "() => window.__pivraSockets.some((r) => r.frames.includes('welcome') && r.closed === null)"


def _console(context: BrowserContext, username: str) -> Page:
    context.add_init_script(TRACK_SOCKETS)
    page = login(context, username)
    page.wait_for_function(CONNECTED)
    return page


def _record(case: str, seconds: float) -> None:
    measured = json.loads(MEASURED.read_text()) if MEASURED.exists() else {}
    measured[case] = round(seconds, 3)
    MEASURED.parent.mkdir(parents=True, exist_ok=True)
    MEASURED.write_text(json.dumps(measured, indent=2, sort_keys=True))


def _assert_closed_within(page: Page, started: float, case: str) -> None:
    page.wait_for_function(
        "() => window.__pivraSockets.every((r) => r.closed !== null)", timeout=WITHIN * 1000, polling=50
    )
    elapsed = time.monotonic() - started
    _record(case, elapsed)
    sockets = page.evaluate("() => window.__pivraSockets.map((r) => [r.closed, r.frames.at(-1)])")
    assert sockets == [[4401, "session.ended"]], sockets
    assert elapsed < WITHIN, f"closed after {elapsed:.2f} s"
    ended = page.get_by_role("alert")
    expect(ended).to_have_text("Your session ended. Sign in again.")
    expect(ended.get_by_role("link", name="Sign in again.")).to_have_attribute(
        "href", "/accounts/login/?next=%2Fdashboard%2Fconversations%2F"
    )
    # No reconnect: not after the first back-off (0.5 s), nor when the tab comes back.
    page.evaluate("() => document.dispatchEvent(new Event('visibilitychange'))")
    page.wait_for_timeout(1500)
    assert page.evaluate("() => window.__pivraSockets.length") == 1


def _set_user(username: str, *, active: bool | None = None, password: str | None = None) -> None:
    user = User.objects.get(username=username)
    if active is not None:
        user.is_active = active
    if password is not None:
        user.set_password(password)
    user.save()


def test_a_deactivated_agents_console_closes_within_5_s(live_stack: AppProcesses, context: BrowserContext) -> None:
    seed()
    page = _console(context, "alice")
    started = time.monotonic()
    off_thread(_set_user, username="alice", active=False)
    _assert_closed_within(page, started, "deactivation")


def test_a_password_change_closes_the_console_within_5_s(live_stack: AppProcesses, context: BrowserContext) -> None:
    seed()
    page = _console(context, "alice")
    started = time.monotonic()
    off_thread(_set_user, username="alice", password="a-new-pass-987")
    _assert_closed_within(page, started, "password change")


def test_logging_out_in_another_tab_closes_this_tabs_console_within_5_s_and_no_other_browser(
    live_stack: AppProcesses, context: BrowserContext, second_context: BrowserContext
) -> None:
    seed()
    page = _console(context, "alice")
    elsewhere = _console(second_context, "alice")  # another browser: its own session
    other_tab = context.new_page()
    other_tab.goto("/dashboard/")
    started = time.monotonic()
    other_tab.get_by_role("button", name="Log out").click()
    _assert_closed_within(page, started, "logout in another tab")
    assert elsewhere.evaluate(CONNECTED)
    expect(elsewhere.get_by_role("alert")).to_have_count(0)
