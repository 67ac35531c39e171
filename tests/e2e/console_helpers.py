"""Shared steps of the dashboard browser tests: seed data, agents' logins, and latency probes.

The probes measure how long a live change takes to reach another browser (the acceptance's "within
a second"). They never assert on speed (no timed assertions, house rule): the figures go to
test-artifacts/console-live-latency.json so they can be reported."""

from __future__ import annotations

import json
import statistics
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from django.contrib.auth.models import User
from django.db import transaction
from django.utils import timezone
from playwright.sync_api import BrowserContext, FrameLocator, Locator, Page, expect

from chatbots.demo import demo_seed
from chatbots.models import Chatbot
from conversations.models import Conversation, Visitor
from conversations.services import conversation_receive_visitor_message, visitor_create, visitor_touch
from handoff.state import visitor_current_conversation
from handoff.transitions.claim import handoff_claim
from handoff.transitions.lead import lead_capture
from handoff.transitions.request import handoff_request
from handoff.transitions.resolve import handoff_resolve
from handoff.transitions.timers import handoff_expire
from tests.e2e.conftest import ARTIFACTS, screenshot
from tests.e2e.widget_helpers import off_thread
from tests.handoff_helpers import enable_handoff, wait_for_agents

PASSWORD = "agent-pass-123"
LIVE = 10_000  # ms: a generous wait for "within a second" on a loaded CI machine; never a speed check
CHROME_UA = (
    "Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
    "Chrome/126.0.0.0 Safari/537.36"
)
# An init script: records the type of every frame the page's sockets receive (window.__pivraFrames).
RECORD_CONSOLE_FRAMES = """
(() => {
  const Native = window.WebSocket;
  const frames = (window.__pivraFrames = []);
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => {
        try { frames.push(JSON.parse(e.data).type); } catch (err) { /* not JSON */ }
      });
    }
  };
})();
"""
LATENCY_FILE = ARTIFACTS / "console-live-latency.json"


# --- seed data, through the services -------------------------------------------------------------


def seed() -> Chatbot:
    """The demo workspace (its bot is the one /demo/ embeds, so the real widget talks to it), with
    two weeks of history and a queue: one keyword request waiting, one in Team busy, one claimed."""
    return off_thread(_seed_data)


def _seed_data() -> Chatbot:
    demo_seed(password=PASSWORD)  # alice and bob, agents of "Demo"
    bot = Chatbot.objects.get(workspace__slug="demo", name="Demo bot")
    bot = enable_handoff(bot, keywords=bot.handoff_keywords, timeout=3600)  # nothing times out meanwhile
    bot = wait_for_agents(bot)  # requests made before the console opens still wait
    alice, bob = User.objects.get(username="alice"), User.objects.get(username="bob")
    _seed_history(bot, alice, bob)
    _seed_queue(bot, bob)
    return bot


def seeded_visitor(bot: Chatbot, *, page: str, locale: str = "en-GB") -> tuple[Visitor, Conversation]:
    visitor = visitor_create(chatbot=bot, locale=locale, user_agent=CHROME_UA, page=page)
    visitor_touch(visitor=visitor)
    return visitor, visitor_current_conversation(visitor=visitor)


def say(visitor: Visitor, conversation: Conversation, text: str) -> None:
    conversation_receive_visitor_message(
        visitor=visitor, conversation_public_id=str(conversation.public_id), client_id=uuid.uuid4().hex, text=text
    )


def _seed_history(bot: Chatbot, alice: User, bob: User) -> None:
    """Two weeks of resolved handoffs, so the analytics page has something to show."""
    now = timezone.now()
    waits = [35, 80, 20, 140, 60, 300, 45, 95, 15, 250, 70, 40, 400, 55, 25, 120, 65, 30, 210, 85]
    for index, wait in enumerate(waits):
        asked = now - timedelta(days=13 - (index * 13) // len(waits), hours=3 + index % 5)
        visitor, conversation = seeded_visitor(bot, page="https://northwind.example/shop")
        say(visitor, conversation, f"Question {index + 1} about an order")
        key = str(conversation.public_id)
        with transaction.atomic():  # claimed before the expiry task can see it pending
            handoff = handoff_request(visitor=visitor, conversation_public_id=key, trigger="button", now=asked)
            late = index % 6 == 5
            if late or index % 7 == 3:
                handoff_expire(handoff_id=handoff.pk, now=asked + timedelta(seconds=3601))
            if index % 7 != 3:
                agent = alice if index % 2 else bob
                claim_wait = 3700 + wait if late else wait
                handoff_claim(agent=agent, conversation_public_id=key, now=asked + timedelta(seconds=claim_wait))
                handoff_resolve(
                    agent=agent, conversation_public_id=key, now=asked + timedelta(seconds=claim_wait + 600)
                )
            else:
                handoff_resolve(agent=alice, conversation_public_id=key, now=asked + timedelta(seconds=4000))


def _seed_queue(bot: Chatbot, bob: User) -> None:
    now = timezone.now()
    visitor, waiting = seeded_visitor(bot, page="https://northwind.example/bulk-orders")
    say(visitor, waiting, "Can I speak to someone about a bulk order for our scout group?")
    handoff_request(
        visitor=visitor,
        conversation_public_id=str(waiting.public_id),
        trigger="keyword",
        now=now - timedelta(minutes=2, seconds=10),
    )

    visitor, busy = seeded_visitor(bot, page="https://northwind.example/orders/1042")
    say(visitor, busy, "My order #1042 still hasn't arrived and it's been two weeks.")
    with transaction.atomic():
        handoff = handoff_request(
            visitor=visitor,
            conversation_public_id=str(busy.public_id),
            trigger="button",
            now=now - timedelta(hours=1, minutes=4),
        )
        handoff_expire(handoff_id=handoff.pk, now=now - timedelta(minutes=4))
    lead_capture(visitor=visitor, conversation_public_id=str(busy.public_id), phone="+44 7911 123456")

    visitor, claimed = seeded_visitor(bot, page="https://northwind.example/shipping")
    say(visitor, claimed, "Do you ship to Norway?")
    with transaction.atomic():
        handoff_request(
            visitor=visitor,
            conversation_public_id=str(claimed.public_id),
            trigger="button",
            now=now - timedelta(minutes=7),
        )
        handoff_claim(
            agent=bob, conversation_public_id=str(claimed.public_id), now=now - timedelta(minutes=6, seconds=18)
        )


# --- agents, in the browser ---------------------------------------------------------------------


def login(context: BrowserContext, username: str, errors: list[str] | None = None, *, password: str = PASSWORD) -> Page:
    page = context.new_page()
    if errors is not None:
        page.on("pageerror", lambda error: errors.append(f"{username}: {error}"))
    page.goto("/accounts/login/?next=/dashboard/conversations/")
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    expect(page.get_by_role("heading", name="Conversations", exact=True)).to_be_visible()
    return page


def handoff_queue(context: BrowserContext, username: str, errors: list[str] | None = None) -> Page:
    """``username`` signed in, on the Conversations page's Handoff tab."""
    page = login(context, username, errors)
    tab(page, "Handoff").click()
    return page


def shot(page: Page, name: str) -> None:
    page.wait_for_function("document.getAnimations().every((a) => a.playState !== 'running')")
    screenshot(page, name)


def tab(page: Page, name: str) -> Locator:
    return page.get_by_role("navigation", name="Conversation tabs").get_by_role("link", name=name)


def row(page: Page, conversation: str) -> Locator:
    return page.locator(f'[data-conversation="{conversation}"]')


def thread_seqs(page: Page) -> list[int]:
    return [int(s) for s in page.locator("[data-thread] [data-seq]").evaluate_all("els => els.map(e => e.dataset.seq)")]


# --- the visitor, in the real widget ---------------------------------------------------------------


def visitor_context(browser: Any, base_url: str) -> BrowserContext:
    """The visitor's own browser profile (a Chrome on macOS, so the side panel has something to name)."""
    context: BrowserContext = browser.new_context(
        base_url=base_url, viewport={"width": 1280, "height": 800}, user_agent=CHROME_UA, locale="en-GB"
    )
    context.set_default_timeout(15_000)
    return context


def widget_rows(frame: FrameLocator, author: str) -> Locator:
    return frame.get_by_role("log", name="Conversation").locator(f".pv-row.pv-{author}[data-seq]")


# --- latency probes -----------------------------------------------------------------------------

_WATCH = """([key, selector, text]) => {
  const seen = (window.__pivraSeen = window.__pivraSeen || {});
  delete seen[key];
  const check = () => {
    const node = document.querySelector(selector);
    if (node && node.textContent.includes(text)) {
      seen[key] = Date.now();
      observer.disconnect();
    }
  };
  const observer = new MutationObserver(check);
  observer.observe(document, { subtree: true, childList: true, characterData: true });
  check();
}"""

_STAMP = """(node, key) => {
  const clicked = (window.__pivraClicked = window.__pivraClicked || {});
  node.addEventListener("click", () => { clicked[key] = Date.now(); }, { capture: true, once: true });
}"""


def watch_for(page: Page, key: str, selector: str, text: str) -> None:
    """Note the wall-clock time at which ``selector`` first contains ``text`` on this page."""
    page.evaluate(_WATCH, [key, selector, text])


def seen_at(page: Page, key: str) -> float:
    value = page.evaluate("(key) => (window.__pivraSeen || {})[key] ?? null", key)
    assert value is not None, f"the probe {key!r} never fired"
    return float(value)


def stamp_click(target: Locator, key: str) -> None:
    """Note the wall-clock time at which ``target`` is clicked, in its own frame's clock (every
    page of one Chromium reads the same system clock, so times compare across contexts)."""
    target.evaluate(_STAMP, key)


def clicked_at(target: Locator, key: str) -> float:
    value = target.evaluate("(_node, key) => (window.__pivraClicked || {})[key] ?? null", key)
    assert value is not None, f"the click {key!r} was never seen"
    return float(value)


def record_latency(test: str, kind: str, samples: list[dict[str, Any]]) -> None:
    """Merge this test's samples (``{"ms", "observer"}``) of one kind into the latency artifact."""
    LATENCY_FILE.parent.mkdir(parents=True, exist_ok=True)
    try:
        data: dict[str, Any] = json.loads(LATENCY_FILE.read_text())
    except (OSError, ValueError):
        data = {}
    data.setdefault(
        "about",
        "Observed delay in ms from an action in one browser (the visitor's click, an agent's Claim) to the "
        "DOM change in another agent's dashboard, measured with Date.now() in both pages of one Chromium "
        "on the real stack (daphne, Celery, Redis). Recorded, not asserted (beyond a 10 s bound).",
    )
    kinds = data.setdefault("kinds", {})
    entry = kinds.setdefault(kind, {"samples": []})
    kept = [s for s in entry["samples"] if s.get("test") != test]
    entry["samples"] = kept + [{**s, "test": test} for s in samples]
    values = sorted(s["ms"] for s in entry["samples"])
    entry["summary"] = {
        "count": len(values),
        "min_ms": values[0],
        "median_ms": statistics.median(values),
        "max_ms": values[-1],
    }
    data["updated_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    LATENCY_FILE.write_text(json.dumps(data, indent=2) + "\n")


def latency_sample(ms: float, observer: str) -> dict[str, Any]:
    assert 0 <= ms < LIVE, f"{observer}: {ms:.0f} ms"  # a generous bound only: a sanity check, not a speed test
    return {"ms": round(ms), "observer": observer}
