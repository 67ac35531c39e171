"""Shared steps of the widget browser tests."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any, TypeVar

from playwright.sync_api import FrameLocator, Page, expect

from chatbots.demo import demo_seed
from chatbots.models import Chatbot

T = TypeVar("T")


def seed_demo() -> Chatbot:
    demo_seed(password="e2e-pass-1")
    return Chatbot.objects.get(workspace__slug="demo", name="Demo bot")


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
