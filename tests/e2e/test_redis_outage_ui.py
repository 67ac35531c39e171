"""A Redis outage is a pause, in Chromium: the widget says "Reconnecting…" and keeps what the visitor
typed and sent, the console shows its "Connection lost" banner; when Redis is back the message is
delivered exactly once and both banners go.

The stack here has a Redis of its own (killed, then started again on the same port); the shared one
and the session's ``live_stack`` are never touched."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlparse

import pytest
from django.db import connection
from playwright.sync_api import Browser, BrowserContext, FrameLocator, Page, expect

from conversations.models import Event
from pivra.servers import Service, free_port, start_redis
from pivra.stack import AppProcesses, start_app
from tests.e2e.conftest import ARTIFACTS, screenshot
from tests.e2e.console_helpers import login, seed
from tests.e2e.widget_helpers import open_widget, send

WIDGET_BANNER = "Reconnecting…"
CONSOLE_BANNER = "Connection lost — reconnecting…"
BACK = 40_000  # ms: Redis back → reconnect (backoff up to 10-15 s) → resend; generous, never a speed check


class OutageStack:
    """daphne, the workers and beat on the test database and a private Redis that can be killed."""

    def __init__(self) -> None:
        self.redis: Service = start_redis()
        self.port = int(urlparse(self.redis.url).port or 0)
        db = connection.settings_dict
        http_port = free_port()
        env = {
            **os.environ,
            "PIVRA_DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "PIVRA_REDIS_URL": self.redis.url,
            "PIVRA_PUBLIC_URL": f"http://127.0.0.1:{http_port}",
            "PIVRA_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "PIVRA_DB_POOL_MAX": "8",
        }
        env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        logs = ARTIFACTS / "logs" / "redis-outage-ui"
        logs.mkdir(parents=True, exist_ok=True)
        self.app: AppProcesses = start_app(
            env=env, port=http_port, log_dir=logs, worker_concurrency=2, delivery_concurrency=2, ai_concurrency=2
        )

    def kill_redis(self) -> None:
        os.killpg(os.getpgid(self.redis.process.pid), signal.SIGKILL)
        self.redis.process.wait(10)

    def start_redis_again(self) -> None:
        self.redis.stop()  # removes its data dir: this Redis comes back empty
        self.redis = start_redis(port=self.port)

    def stop(self) -> None:
        self.app.stop()
        self.redis.stop()


@pytest.fixture
def stack(django_db_setup: None, transactional_db: None) -> Iterator[OutageStack]:
    outage = OutageStack()
    yield outage
    outage.stop()


def _context(browser: Browser, stack: OutageStack) -> BrowserContext:
    context = browser.new_context(base_url=stack.app.http_url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    return context


def _wait_for(condition: Callable[[], bool], what: str, seconds: float = 40) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting until {what}")
        time.sleep(0.2)


def _stored(text: str) -> int:
    return Event.objects.filter(kind="message", author="visitor", text=text).count()


@pytest.mark.parametrize("transport", ["ws", "sse"])
def test_a_redis_outage_is_a_pause_for_the_visitor_and_the_agent(
    browser: Browser, stack: OutageStack, transport: str
) -> None:
    """Over the socket the message waits in the widget until a hello works again; over SSE (sockets
    blocked) it is POSTed, refused with 503 + Retry-After and retried with backoff until it is stored."""
    seed()
    agent_context, visitor_context = _context(browser, stack), _context(browser, stack)
    try:
        agent = login(agent_context, "alice")
        console_banner = agent.locator("[data-connection-banner]")
        expect(console_banner).to_have_text("")

        visitor: Page = visitor_context.new_page()
        if transport == "sse":
            visitor.add_init_script("delete window.WebSocket;")  # in the widget's frame too
        frame: FrameLocator = open_widget(visitor)
        body = frame.locator("body")
        log = frame.get_by_role("log", name="Conversation")
        banner = frame.locator(".pv-banner")
        expect(body).to_have_attribute("data-connected", "true")
        expect(body).to_have_attribute("data-transport", transport)
        send(frame, "Hello before the blip")
        expect(log.locator(".pv-row.pv-visitor[data-seq]")).to_have_count(1)

        stack.kill_redis()
        # Both streams hear their subscription fail and close (4503); neither page is reloaded.
        expect(banner).to_have_text(WIDGET_BANNER)
        expect(console_banner).to_have_text(CONSOLE_BANNER)

        lost = "Sent while Redis was down"
        send(frame, lost)
        box = frame.get_by_role("textbox", name="Message")
        box.fill("and this one is still being typed")
        pending = log.locator(".pv-row.pv-visitor.pv-sending")
        expect(pending).to_have_count(1)
        expect(pending).to_contain_text(lost)
        # A page that only reads the database still opens for the agent meanwhile.
        agent.reload()
        expect(agent.get_by_role("heading", name="Conversations", exact=True)).to_be_visible()
        expect(console_banner).to_have_text(CONSOLE_BANNER)
        screenshot(visitor, f"redis-outage-widget-reconnecting-{transport}")
        screenshot(agent, f"redis-outage-console-banner-{transport}")
        assert _stored(lost) == 0  # refused while Redis was away: kept in the widget, not lost

        stack.start_redis_again()
        expect(pending).to_have_count(0, timeout=BACK)
        expect(banner).to_have_text("", timeout=BACK)
        expect(console_banner).to_have_text("", timeout=BACK)
        _wait_for(lambda: _stored(lost) == 1, "the pending message is stored")
        expect(log.locator(".pv-row.pv-visitor", has_text=lost)).to_have_count(1)
        expect(box).to_have_value("and this one is still being typed")
        time.sleep(2)  # a late duplicate resend would land now
        assert _stored(lost) == 1
        expect(log.locator(".pv-row.pv-visitor", has_text=lost)).to_have_count(1)
        screenshot(visitor, f"redis-outage-widget-back-{transport}")
        screenshot(agent, f"redis-outage-console-back-{transport}")
        # No web process exited over it (every one of them, not only the first).
        assert [w.name for w in stack.app.web_services() if w.process.poll() is not None] == []
    finally:
        agent_context.close()
        visitor_context.close()
