"""Shared steps of the widget browser tests."""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Self, TypeVar

from playwright.sync_api import BrowserContext, FrameLocator, Page, expect

from chatbots.demo import demo_seed
from chatbots.models import Chatbot
from pivra.stack import AppProcesses
from tests.handoff_helpers import wait_for_agents

T = TypeVar("T")
DEMO_PASSWORD = "e2e-pass-1"


def seed_demo() -> Chatbot:
    """The demo bot, with the brief's classic waiting flow: these tests ask for a person before (or
    without) any agent console being open. tests/e2e/test_office_hours.py covers skip-the-wait."""
    demo_seed(password=DEMO_PASSWORD)
    return wait_for_agents(Chatbot.objects.get(workspace__slug="demo", name="Demo bot"))


def open_widget(page: Page) -> FrameLocator:
    page.goto("/demo/")
    page.get_by_role("button", name="Open chat").click()
    frame = page.frame_locator("iframe[title='Chat']")
    expect(frame.get_by_role("textbox", name="Message")).to_be_editable()
    return frame


def send(frame: FrameLocator, text: str) -> None:
    box = frame.get_by_role("textbox", name="Message")
    box.fill(text)
    box.press("Enter")


def widget_state(frame: FrameLocator) -> Any:
    return frame.locator("body")


def off_thread(fn: Callable[..., T], **kwargs: Any) -> T:
    """Run a service outside Playwright's thread: its sync API keeps an event loop on this thread,
    and services broadcast with async_to_sync, which refuses to run under one."""
    result: dict[str, Any] = {}

    def run() -> None:
        from django.db import connection

        try:
            result["value"] = fn(**kwargs)
        except BaseException as exc:
            result["error"] = exc
        finally:
            connection.close()

    thread = threading.Thread(target=run)
    thread.start()
    thread.join(60)
    if "error" in result:
        raise result["error"]
    return result["value"]


# --- servers on loopback beside the stack ------------------------------------------------------


class _Quiet(BaseHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Served(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, handler: type[BaseHTTPRequestHandler]) -> None:
        super().__init__(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.shutdown()
        self.server_close()
        self._thread.join(5)


class Site(_Served):
    """A customer's website on its own origin: fixed HTML pages by path."""

    def __init__(self, pages: dict[str, str] | None = None) -> None:
        super().__init__(_SiteHandler)
        self.pages = dict(pages or {})


class _SiteHandler(_Quiet):
    server: Site

    def do_GET(self) -> None:
        page = self.server.pages.get(self.path.split("?", 1)[0])
        body = (page if page is not None else "not found").encode()
        self.send_response(200 if page is not None else 404)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


class StreamingLLM(_Served):
    """An OpenAI-compatible ``/chat/completions`` server that streams its first reply slowly: it sends
    ``first`` at once, then holds the stream open (with keep-alive comments, so the client's read
    timeout never fires) until ``release`` is set, then sends ``rest``. Later replies stream at once."""

    def __init__(self, *, first: list[str], rest: list[str], later: list[str]) -> None:
        super().__init__(_LLMHandler)
        self.first, self.rest, self.later = first, rest, later
        self.release = threading.Event()
        self.requests = 0
        self._lock = threading.Lock()

    @property
    def url(self) -> str:
        return f"{self.origin}/v1"

    def __exit__(self, *exc: object) -> None:
        self.release.set()  # never leave a worker's stream hanging
        super().__exit__(*exc)


class _LLMHandler(_Quiet):
    server: StreamingLLM

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length", "0")))
        with self.server._lock:
            self.server.requests += 1
            number = self.server.requests
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()
        if number == 1:
            self._chunks(self.server.first)
            while not self.server.release.wait(0.5):
                self._send(": keep-alive\n\n")
            self._chunks(self.server.rest)
        else:
            self._chunks(self.server.later)
        self._send("data: [DONE]\n\n")

    def _chunks(self, chunks: list[str]) -> None:
        for chunk in chunks:
            self._send(f"data: {json.dumps({'choices': [{'delta': {'content': chunk}}]})}\n\n")

    def _send(self, raw: str) -> None:
        self.wfile.write(raw.encode())
        self.wfile.flush()


@contextmanager
def daphne_with(live_stack: AppProcesses, **overrides: str) -> Iterator[None]:
    """Run the stack's daphne processes with extra settings (e.g. a low rate limit) for one test, then
    restore them. The limits are checked in daphne, so the workers and beat keep running as they are."""
    original = live_stack.service("daphne").env
    for service in live_stack.web_services():
        service.stop()
        service.env = {**(original or os.environ), **overrides}
    live_stack.start("daphne")  # every web process that is not running
    try:
        yield
    finally:
        for restarted in live_stack.web_services():
            restarted.stop()
            restarted.env = original
        live_stack.start("daphne")


# --- an agent, through the console API ---------------------------------------------------------


class AgentConsole:
    """An agent logged in through the login page in their own browser context, calling the console
    API with the session cookie (and the CSRF token on writes), as the dashboard does."""

    def __init__(self, context: BrowserContext, username: str, password: str = DEMO_PASSWORD) -> None:
        self.context = context
        page = context.new_page()
        page.goto("/accounts/login/?next=/dashboard/conversations/")
        page.get_by_label("Username").fill(username)
        page.get_by_label("Password").fill(password)
        page.get_by_role("button", name="Log in").click()
        expect(page.get_by_role("heading", name="Conversations", exact=True)).to_be_visible()
        page.close()

    def get(self, path: str) -> Any:
        response = self.context.request.get(f"/api/console{path}")
        assert response.ok, f"GET {path}: {response.status} {response.text()}"
        return response.json()

    def post(self, path: str, data: dict[str, Any] | None = None) -> Any:
        cookies = {c["name"]: c["value"] for c in self.context.cookies()}
        response = self.context.request.post(
            f"/api/console{path}", data=data or {}, headers={"X-CSRFToken": cookies.get("csrftoken", "")}
        )
        assert response.ok, f"POST {path}: {response.status} {response.text()}"
        return response.json()
