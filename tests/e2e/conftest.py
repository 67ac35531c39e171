"""Browser tests: the real stack (daphne, Celery worker and beat) on the test database, driven in
Debian's Chromium through Playwright. Each test's data is committed (transactional_db) so the
server processes can see it."""

from __future__ import annotations

import os
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from django.conf import settings
from django.db import connection
from playwright.sync_api import Browser, BrowserContext, Page, Playwright, sync_playwright

from pivra.stack import AppProcesses, free_port, start_app

ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = ROOT / "test-artifacts"
# Playwright's sync API runs an event loop in this thread between calls; the ORM is used from the
# same test, never concurrently with it.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    # Conftest hooks see every item of the session: mark only this folder's.
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.e2e)


class SmtpSink:
    """A real SMTP server on loopback that the stack's workers send every email to (issue 16's
    transcripts; email actions too): ``messages`` are the parsed emails, ``envelopes`` what was said."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.envelopes: list[Any] = []
        self.port = free_port()
        self._controller = Controller(self, hostname="127.0.0.1", port=self.port)

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.envelopes.append(envelope)
        self.messages.append(BytesParser(policy=policy.default).parsebytes(envelope.content))
        return "250 Message accepted"

    def to(self, address: str) -> list[EmailMessage]:
        return [m for m, e in zip(self.messages, self.envelopes, strict=True) if address in e.rcpt_tos]


@pytest.fixture(scope="session")
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink()
    sink._controller.start()
    yield sink
    sink._controller.stop()


@pytest.fixture(scope="session")
def live_stack(django_db_setup: None, django_db_blocker: object, smtp_sink: SmtpSink) -> Iterator[AppProcesses]:
    port = free_port()
    db = connection.settings_dict
    database_url = f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}"
    if connection.vendor != "postgresql":
        database_url = f"sqlite:///{db['NAME']}"
    logs = ARTIFACTS / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PIVRA_DATABASE_URL": database_url,
        "PIVRA_REDIS_URL": settings.REDIS_URL,
        "PIVRA_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "PIVRA_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "PIVRA_WEBHOOK_ALLOW_PRIVATE": "true",
        "PIVRA_DB_POOL_MAX": "8",
        "PIVRA_EMAIL_HOST": "127.0.0.1",
        "PIVRA_EMAIL_PORT": str(smtp_sink.port),
        "PIVRA_EMAIL_USE_TLS": "false",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    app = start_app(env=env, port=port, log_dir=logs, worker_concurrency=4)
    yield app
    app.stop()


@pytest.fixture(scope="session")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="session")
def browser(playwright: Playwright) -> Iterator[Browser]:
    executable = os.environ.get("PIVRA_CHROMIUM", "/usr/bin/chromium")
    browser = playwright.chromium.launch(
        executable_path=executable,
        headless=True,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-dev-shm-usage",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    )
    yield browser
    browser.close()


def _new_context(browser: Browser, base_url: str) -> BrowserContext:
    context = browser.new_context(base_url=base_url, viewport={"width": 1280, "height": 800})
    context.set_default_timeout(15_000)
    return context


@pytest.fixture
def context(browser: Browser, live_stack: AppProcesses, transactional_db: None) -> Iterator[BrowserContext]:
    ctx = _new_context(browser, live_stack.http_url)
    yield ctx
    ctx.close()


@pytest.fixture
def page(context: BrowserContext) -> Page:
    return context.new_page()


@pytest.fixture
def second_context(browser: Browser, live_stack: AppProcesses, transactional_db: None) -> Iterator[BrowserContext]:
    """Another browser profile: the visitor in one context, the agent in another."""
    ctx = _new_context(browser, live_stack.http_url)
    yield ctx
    ctx.close()


def screenshot(page: Page, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    page.screenshot(path=str(path), full_page=False)
    return path
