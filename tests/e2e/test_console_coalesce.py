"""The live conversation list re-fetches itself at most twice for a burst of workspace events.

static/console/coalesce.js runs in Chromium as an ES module, imported from a page Playwright serves
itself (no server, no Node needed). The fetch is a promise the script settles itself, so the counts
below do not depend on timing; waits only let timers and promises run."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Route

STATIC = Path(__file__).resolve().parents[2] / "static" / "console"
ORIGIN = "http://console.test"

HARNESS = """
async () => {
  const { coalesce } = await import("/static/console/coalesce.js");
  const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
  async function until(check) {
    for (let i = 0; i < 500 && !check(); i++) await sleep(10);
  }

  let started = 0;
  let finish = null;
  const refresh = coalesce(() => {
    started += 1;
    return new Promise((resolve) => { finish = resolve; });
  }, { delay: 20 });

  const seen = {};
  for (let i = 0; i < 50; i++) refresh();            // a burst: a claim, its queue change, messages...
  await until(() => started === 1);
  await sleep(100);
  seen.during_first_fetch = started;
  for (let i = 0; i < 50; i++) refresh();            // more of the burst while the fetch is in flight
  await sleep(100);
  seen.still_one_in_flight = started;
  finish();
  await until(() => started === 2);                  // the queued refetch picks up the latest change
  await sleep(100);
  seen.after_first = started;
  finish();
  await sleep(200);
  seen.after_burst = started;                        // nothing more: the burst cost two fetches
  refresh();                                         // a later event is not swallowed
  await until(() => started === 3);
  seen.later_event = started;
  finish();

  let attempts = 0;
  const flaky = coalesce(() => {
    attempts += 1;
    return attempts === 1 ? Promise.reject(new Error("offline")) : Promise.resolve();
  }, { delay: 5 });
  flaky();
  await until(() => attempts === 1);
  await sleep(50);
  flaky();                                           // a failed fetch does not jam the next one
  await until(() => attempts === 2);
  seen.after_failure = attempts;
  return seen;
}
"""


def _serve(route: Route) -> None:
    path = route.request.url.removeprefix(ORIGIN)
    if path == "/":
        route.fulfill(body="<!doctype html><title>coalesce</title>", content_type="text/html")
    elif path.startswith("/static/console/") and (STATIC / path.removeprefix("/static/console/")).is_file():
        route.fulfill(path=STATIC / path.removeprefix("/static/console/"), content_type="text/javascript")
    else:
        route.fulfill(status=404, body="not found")


@pytest.fixture
def module_page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context()
    context.route(f"{ORIGIN}/**", _serve)
    page = context.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    page.goto(f"{ORIGIN}/")
    yield page
    context.close()
    assert errors == []


def test_a_burst_of_events_costs_at_most_two_fetches_and_a_later_one_still_refreshes(module_page: Page) -> None:
    seen: dict[str, Any] = module_page.evaluate(HARNESS)
    assert seen == {
        "during_first_fetch": 1,
        "still_one_in_flight": 1,
        "after_first": 2,
        "after_burst": 2,
        "later_event": 3,
        "after_failure": 2,
    }


def test_the_conversation_list_refreshes_through_the_coalescer() -> None:
    script = (STATIC / "conversations.js").read_text()
    assert 'import { coalesce } from "./coalesce.js";' in script
    assert "coalesce(refresh, { delay: 150 })" in script
