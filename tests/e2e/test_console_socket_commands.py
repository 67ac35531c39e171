"""The console page claims and replies over its socket when it is open, and over HTTP when it is not.

In Chromium against the real stack: with the socket up, the claim and the reply leave as socket
frames and no POST is made; with every console socket refused (Playwright closes each one as it
opens), the same page sends the reply over the console API and it is shown and stored all the same."""

from __future__ import annotations

from typing import Any

from playwright.sync_api import BrowserContext, Page, WebSocketRoute, expect

from chatbots.models import Chatbot
from conversations.models import Conversation, Event
from handoff.transitions.request import handoff_request
from pivra.stack import AppProcesses
from tests.e2e.console_helpers import LIVE, login, say, seed, seeded_visitor
from tests.e2e.widget_helpers import off_thread


def _ask_for_a_person(bot: Chatbot) -> str:
    visitor, conversation = seeded_visitor(bot, page="https://northwind.example/tents")
    say(visitor, conversation, "hello")
    handoff_request(visitor=visitor, conversation_public_id=str(conversation.public_id), trigger="button")
    return str(conversation.public_id)


def _visitor_says(conversation: str, text: str) -> None:
    found = Conversation.objects.select_related("visitor").get(public_id=conversation)
    say(found.visitor, found, text)


def _agent_replies(conversation: str) -> list[str]:
    return list(
        Event.objects.filter(conversation__public_id=conversation, author="agent")
        .order_by("seq")
        .values_list("text", flat=True)
    )


def _until(page: Page, condition: Any, seconds: float = 10) -> None:
    for _ in range(int(seconds * 20)):
        if condition():
            return
        page.wait_for_timeout(50)
    raise AssertionError("condition not met in time")


def _reply(page: Page, text: str) -> None:
    page.locator("#reply-box").fill(text)
    page.locator("#reply-box").press("Enter")
    expect(page.locator(".ev-agent .ev-bubble").last).to_have_text(text, timeout=LIVE)


def test_claim_and_reply_go_over_the_socket_and_fall_back_to_http_when_it_is_down(
    context: BrowserContext, live_stack: AppProcesses
) -> None:
    bot = seed()
    conversation = off_thread(_ask_for_a_person, bot=bot)
    alice = login(context, "alice")
    posts: list[str] = []
    alice.on("request", lambda r: posts.append(r.url) if r.method == "POST" and "/api/console/" in r.url else None)
    frames: list[Any] = []
    heard: list[Any] = []

    def on_socket(ws: Any) -> None:
        ws.on("framesent", lambda payload: frames.append(payload))
        ws.on("framereceived", lambda payload: heard.append(payload))

    alice.on("websocket", on_socket)
    alice.goto(f"/dashboard/conversations/{conversation}/")
    expect(alice.locator("[data-claim]")).to_be_visible()
    _until(alice, lambda: any('"watching"' in str(frame) for frame in heard))  # the page's socket is open
    alice.locator("[data-claim]").click()
    expect(alice.locator("#reply-box")).to_be_enabled(timeout=LIVE)
    _reply(alice, "Over the socket")
    assert not [url for url in posts if url.endswith(("/claim", "/reply"))], posts
    sent = " ".join(str(frame) for frame in frames)
    assert '"type":"claim"' in sent and '"type":"reply"' in sent

    # Every console socket refused from now on: the reply goes over HTTP.
    def refuse(ws: WebSocketRoute) -> None:
        ws.close(code=4503)

    alice.route_web_socket("**/ws/console/", refuse)
    alice.reload()
    expect(alice.locator("#reply-box")).to_be_enabled(timeout=LIVE)
    _reply(alice, "Over HTTP")
    assert [url for url in posts if url.endswith("/reply")], posts
    assert off_thread(_agent_replies, conversation=conversation) == ["Over the socket", "Over HTTP"]


def test_a_reply_the_socket_never_answers_goes_over_http_and_is_stored_and_shown_once(
    context: BrowserContext, live_stack: AppProcesses
) -> None:
    """The socket stays open but the server never hears the reply (Playwright drops that frame): the
    page's wait for the answer runs out, the same reply goes over HTTP with the same client id, and
    the event the socket later brings (the broadcast of that reply) is not shown a second time."""
    bot = seed()
    conversation = off_thread(_ask_for_a_person, bot=bot)
    alice = login(context, "alice")
    posts: list[str] = []
    alice.on("request", lambda r: posts.append(r.url) if r.method == "POST" and "/api/console/" in r.url else None)
    dropped: list[str] = []
    heard: list[str] = []

    def drop_replies(ws: WebSocketRoute) -> None:
        server = ws.connect_to_server()

        def from_page(message: str | bytes) -> None:
            if '"type":"reply"' in str(message):
                dropped.append(str(message))
                return
            server.send(message)

        def from_server(message: str | bytes) -> None:
            heard.append(str(message))
            ws.send(message)

        ws.on_message(from_page)
        server.on_message(from_server)

    alice.route_web_socket("**/ws/console/", drop_replies)
    alice.goto(f"/dashboard/conversations/{conversation}/")
    expect(alice.locator("[data-claim]")).to_be_visible()
    _until(alice, lambda: any('"watching"' in frame for frame in heard))  # the page's socket is open
    alice.locator("[data-claim]").click()  # claims still go over the socket
    expect(alice.locator("#reply-box")).to_be_enabled(timeout=LIVE)
    assert not [url for url in posts if url.endswith("/claim")], posts

    alice.locator("#reply-box").fill("Said once")
    alice.locator("#reply-box").press("Enter")
    # The page waits for the socket's answer first (5 s), then posts: a generous wait, not a speed check.
    expect(alice.locator(".ev-agent .ev-bubble").last).to_have_text("Said once", timeout=3 * LIVE)
    assert len(dropped) == 1, dropped
    assert len([url for url in posts if url.endswith("/reply")]) == 1, posts
    # The broadcast of the stored reply reaches the page over the socket; it must not show twice.
    # The visitor's next message comes after it on the same socket: once that is shown, so was it.
    _until(alice, lambda: any('"Said once"' in frame and '"type":"event"' in frame for frame in heard))
    off_thread(_visitor_says, conversation=conversation, text="Thanks, got it")
    expect(alice.locator(".ev", has_text="Thanks, got it")).to_be_visible(timeout=LIVE)
    expect(alice.locator(".ev-agent .ev-bubble", has_text="Said once")).to_have_count(1)
    assert off_thread(_agent_replies, conversation=conversation) == ["Said once"]
