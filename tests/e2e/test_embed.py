"""The widget embedded on a customer's site of another origin, exactly as the README tells them to.

Pivra is addressed as http://localhost:<port>; the customer's site, a site that is not allowed and an
advertiser are each a small HTTP server of their own on http://127.0.0.1:<port>: four origins."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator

import pytest
from playwright.sync_api import Frame, Page, expect

from chatbots.models import Chatbot
from chatbots.services import chatbot_set_allowed_origins
from chatbots.snippet import embed_snippet
from conversations.models import Visitor
from pivra.stack import AppProcesses
from tests.e2e.conftest import screenshot
from tests.e2e.widget_helpers import Site, seed_demo, send

# The README's snippet for calls made before the loader arrives, plus a record of what the page heard.
SHOP_PAGE = """<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Fjord Bikes</title>
  <style>
    body {{ margin: 0; font-family: Georgia, serif; background: #f4f1ea; color: #1b2a3a; }}
    header {{ background: #1b2a3a; color: #f4f1ea; padding: 18px 6vw; font-size: 20px; }}
    main {{ padding: 48px 6vw; max-width: 640px; }}
    h1 {{ font-size: 44px; margin: 0 0 12px; }}
    p {{ font-size: 18px; line-height: 1.5; }}
    iframe.ad {{ border: 1px solid #d8d2c4; width: 300px; height: 90px; }}
  </style>
</head>
<body>
  <header><strong>Fjord Bikes</strong></header>
  <main>
    <h1>Bikes built for rain.</h1>
    <p>Steel frames, full fenders and hub gears. Questions about returns or delivery? Ask in the chat.</p>
    {advert}
  </main>
  <script>
    window.heardByPage = [];
    window.addEventListener("pivra:ready", function () {{ heardByPage.push("dom:pivra:ready"); }});
    window.Pivra = window.Pivra || function () {{ (Pivra.q = Pivra.q || []).push(arguments); }};
    Pivra("on", "ready", function () {{ heardByPage.push("ready"); }});
    Pivra("on", "open", function () {{ heardByPage.push("open"); }});
    Pivra("on", "close", function () {{ heardByPage.push("close"); }});
    Pivra("on", "unread", function (count) {{ heardByPage.push("unread " + count); }});
    Pivra("open");
    window.queuedBeforeTheLoader = Pivra.q.length;
  </script>
  {snippet}
</body>
</html>
"""
AD_PAGE = "<!doctype html><title>Advert</title><p style='font:14px sans-serif'>Rain capes, 20% off</p>"
# Records every message a window receives, so a test knows a spoofed message did arrive.
RECORD_MESSAGES = """() => {
  window.messagesFrom = [];
  window.addEventListener("message", (e) => messagesFrom.push(e.origin + " " + (e.data && e.data.event)));
}"""


def _pivra_url(live_stack: AppProcesses) -> str:
    return live_stack.http_url.replace("127.0.0.1", "localhost")


def _shop_page(snippet: str, ad_url: str | None = None) -> str:
    advert = f'<iframe class="ad" title="Advert" src="{ad_url}"></iframe>' if ad_url else ""
    return SHOP_PAGE.format(snippet=snippet, advert=advert)


@pytest.fixture
def sites() -> Iterator[tuple[Site, Site, Site]]:
    with Site() as shop, Site() as elsewhere, Site({"/ad": AD_PAGE}) as ads:
        yield shop, elsewhere, ads


def _heard(frame: Frame | Page, entry: str) -> None:
    frame.wait_for_function("(entry) => window.messagesFrom.includes(entry)", arg=entry)


def _seed(shop: Site) -> Chatbot:
    bot = seed_demo()
    return chatbot_set_allowed_origins(chatbot=bot, origins=[shop.origin])


def test_a_customer_site_on_another_origin_embeds_the_chat_with_the_readme_snippet(
    page: Page, live_stack: AppProcesses, sites: tuple[Site, Site, Site]
) -> None:
    shop, _, ads = sites
    bot = _seed(shop)
    pivra = _pivra_url(live_stack)
    shop.pages["/"] = _shop_page(str(embed_snippet(bot, base_url=pivra)), f"{ads.origin}/ad")
    page.goto(f"{shop.origin}/")

    # Pivra("open") was queued before the loader arrived: the chat opens by itself, then says ready.
    launcher = page.locator("#pivra-root button.pivra-l")
    expect(launcher).to_have_attribute("aria-expanded", "true")
    chat = page.frame_locator("iframe[title='Chat']")
    expect(chat.get_by_role("textbox", name="Message")).to_be_editable()
    expect(chat.locator("body")).to_have_attribute("data-open", "true")
    page.wait_for_function("() => window.heardByPage.includes('dom:pivra:ready')")
    assert page.evaluate("() => window.heardByPage") == ["open", "ready", "dom:pivra:ready"]
    assert page.evaluate("() => [window.queuedBeforeTheLoader, window.Pivra.loaded === true]") == [5, True]
    src = page.locator("iframe[title='Chat']").get_attribute("src") or ""
    # The host page's origin, then the visitor's browser languages (issue 17: the frame negotiates with them).
    assert src == (
        f"{pivra}/widget/frame/{bot.public_key}/?origin=http%3A%2F%2F127.0.0.1%3A{shop.server_address[1]}"
        "&langs=en-US%2Cen"
    )
    assert "token" not in src

    # The chat works in the frame, and the page the visitor is on reaches Pivra over postMessage.
    send(chat, "What is your return policy?")
    log = chat.get_by_role("log", name="Conversation")
    expect(log).to_contain_text("return any unused item within 60 days")
    visitor = Visitor.objects.get()
    assert visitor.chatbot_id == bot.pk
    expect(chat.locator("body")).to_have_attribute("data-connected", "true")
    _eventually(
        page, lambda: Visitor.objects.get(pk=visitor.pk).current_page == f"{shop.origin}/", "the page is reported"
    )
    screenshot(page, "embed-cross-origin")

    # close / toggle from the page's script; the frame hears each one.
    page.evaluate("() => Pivra('close')")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    expect(page.locator("iframe[title='Chat']")).to_be_hidden()
    expect(chat.locator("body")).to_have_attribute("data-open", "false")
    page.evaluate("() => Pivra('toggle')")
    expect(launcher).to_have_attribute("aria-expanded", "true")
    expect(chat.locator("body")).to_have_attribute("data-open", "true")
    page.evaluate("() => Pivra('toggle')")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    expect(chat.locator("body")).to_have_attribute("data-open", "false")
    launcher.click()
    expect(chat.locator("body")).to_have_attribute("data-open", "true")
    # The frame's own close button asks the page to close it (frame → page, exact origin).
    _settled(page)  # a click inside a frame that is still sliding in could land beside the button
    chat.get_by_role("button", name="Close chat").click()
    expect(launcher).to_have_attribute("aria-expanded", "false")
    assert page.evaluate("() => window.heardByPage.filter((e) => e === 'open' || e === 'close')") == [
        "open",
        "close",
        "open",
        "close",
        "open",
        "close",
    ]


def test_the_loader_ignores_messages_from_an_advert_on_the_customers_page(
    page: Page, live_stack: AppProcesses, sites: tuple[Site, Site, Site]
) -> None:
    shop, _, ads = sites
    bot = _seed(shop)
    shop.pages["/"] = _shop_page(str(embed_snippet(bot, base_url=_pivra_url(live_stack))), f"{ads.origin}/ad")
    page.goto(f"{shop.origin}/")
    page.wait_for_function("() => window.heardByPage.includes('dom:pivra:ready')")
    page.evaluate("() => Pivra('close')")
    launcher = page.locator("#pivra-root button.pivra-l")
    expect(launcher).to_have_attribute("aria-expanded", "false")
    page.evaluate(RECORD_MESSAGES)

    # The advert (a third origin) posts the frame's own messages to the page.
    advert = page.frame_locator("iframe[title='Advert']").locator("body")
    advert.evaluate(
        """() => {
          parent.postMessage({ event: "pivra:unread", payload: { count: 7 } }, "*");
          parent.postMessage({ event: "pivra:ready", payload: { accentColor: "#ff0000" } }, "*");
          parent.postMessage({ event: "pivra:close", payload: {} }, "*");
        }"""
    )
    _heard(page, f"{ads.origin} pivra:unread")
    _heard(page, f"{ads.origin} pivra:ready")
    _heard(page, f"{ads.origin} pivra:close")
    expect(launcher).to_have_attribute("aria-label", "Open chat")  # no "(7 unread)"
    expect(page.locator("#pivra-root .pivra-b")).to_be_hidden()
    page.evaluate("() => Pivra('open')")
    expect(launcher).to_have_attribute("aria-expanded", "true")
    advert.evaluate("""() => parent.postMessage({ event: "pivra:close", payload: {} }, "*")""")
    page.wait_for_function(
        "(entry) => window.messagesFrom.filter((m) => m === entry).length === 2", arg=f"{ads.origin} pivra:close"
    )
    expect(launcher).to_have_attribute("aria-expanded", "true")
    heard = page.evaluate("() => window.heardByPage")
    assert heard.count("ready") == 1 and heard.count("dom:pivra:ready") == 1
    assert not [entry for entry in heard if entry.startswith("unread")]


def test_no_other_window_can_drive_the_chat(
    page: Page, live_stack: AppProcesses, sites: tuple[Site, Site, Site]
) -> None:
    shop, blog, ads = sites
    bot = seed_demo()
    chatbot_set_allowed_origins(chatbot=bot, origins=[shop.origin, blog.origin])
    pivra = _pivra_url(live_stack)
    shop.pages["/"] = _shop_page(str(embed_snippet(bot, base_url=pivra)), f"{ads.origin}/ad")
    page.goto(f"{shop.origin}/")
    expect(page.frame_locator("iframe[title='Chat']").locator("body")).to_have_attribute("data-connected", "true")

    # An advert on the customer's page cannot even address the chat: the loader keeps it in a shadow
    # root, which window.frames does not list.
    advert = page.frame_locator("iframe[title='Advert']").locator("body")
    assert advert.evaluate("() => [parent.frames.length, parent.frames[0] === window]") == [1, True]

    # A page of another origin that opens the chat in a window of its own loses its handle on it
    # (Cross-Origin-Opener-Policy), so it has nothing to post messages to.
    other = page.context.new_page()
    other.goto(f"{ads.origin}/ad")
    frame_url = f"{pivra}/widget/frame/{bot.public_key}/?origin={shop.origin}"
    with other.expect_popup() as popup:
        other.evaluate("(url) => { window.chat = window.open(url, 'chat', 'popup'); }", frame_url)
    expect(popup.value.get_by_role("textbox", name="Message")).to_be_editable()
    other.wait_for_function("() => window.chat.closed")

    # A page that frames the chat while naming another site as its parent (both are allowed, so the
    # browser shows it) is not who the chat talks to: its messages are ignored, and the chat's own
    # messages go to the named site only, so this page never hears them.
    blog.pages["/"] = (
        "<!doctype html><title>Fjord Bikes blog</title>"
        f"<iframe title='Chat' src='{frame_url}' style='width:380px;height:600px'></iframe>"
    )
    blog_page = page.context.new_page()
    blog_page.goto(f"{blog.origin}/")
    blog_page.evaluate(RECORD_MESSAGES)
    framed = blog_page.frame_locator("iframe[title='Chat']")
    body = framed.locator("body")
    expect(body).to_have_attribute("data-connected", "true")
    expect(body).to_have_attribute("data-open", "false")  # embedded: closed until its parent opens it
    body.evaluate(RECORD_MESSAGES)
    blog_page.evaluate(
        """() => {
          const chat = document.querySelector("iframe").contentWindow;
          chat.postMessage({ event: "pivra:open", payload: {} }, "*");
          chat.postMessage({ event: "pivra:page", payload: { url: "https://phish.example/" } }, "*");
        }"""
    )
    framed_frame = next(f for f in blog_page.frames if f != blog_page.main_frame)
    _heard(framed_frame, f"{blog.origin} pivra:open")
    _heard(framed_frame, f"{blog.origin} pivra:page")
    expect(body).to_have_attribute("data-open", "false")
    send(framed, "What are your opening hours?")
    expect(framed.get_by_role("log", name="Conversation")).to_contain_text("Monday to Friday")
    # The page report would have gone out on the socket before this message: none was taken.
    assert not Visitor.objects.filter(current_page__contains="phish.example").exists()
    assert blog_page.evaluate("() => window.messagesFrom") == []


def test_a_site_that_is_not_allowed_cannot_show_the_chat(
    page: Page, live_stack: AppProcesses, sites: tuple[Site, Site, Site]
) -> None:
    shop, elsewhere, _ = sites
    bot = _seed(shop)
    pivra = _pivra_url(live_stack)
    elsewhere.pages["/"] = _shop_page(str(embed_snippet(bot, base_url=pivra)))
    # A copy that skips the loader and claims to be the allowed shop in the frame's address.
    elsewhere.pages["/spoof"] = (
        "<!doctype html><title>Spoof</title>"
        f"<iframe title='Chat' src='{pivra}/widget/frame/{bot.public_key}/?origin={shop.origin}'"
        " style='width:380px;height:600px'></iframe>"
    )
    console: list[str] = []
    page.on("console", lambda message: console.append(message.text))

    with page.expect_response(re.compile(r"/widget/frame/")) as frame_response:
        page.goto(f"{elsewhere.origin}/")
    assert frame_response.value.status == 403  # the loader named this site, which is not allowed
    _blocked(page)
    launcher = page.locator("#pivra-root button.pivra-l")
    expect(launcher).to_have_attribute("aria-expanded", "true")  # the queued "open" ran …
    expect(launcher).to_be_hidden()  # … but the visitor sees no bubble and no empty panel
    expect(page.locator("#pivra-root iframe.pivra-f")).to_be_hidden()
    # The site's owner, looking at the console, is told what to do.
    _eventually(page, lambda: any("did not load on " + elsewhere.origin in line for line in console), "the warning")
    screenshot(page, "embed-not-allowed")
    assert page.evaluate("() => window.heardByPage") == ["open"]  # never ready

    console.clear()
    with page.expect_response(re.compile(r"/widget/frame/")) as frame_response:
        page.goto(f"{elsewhere.origin}/spoof")
    assert frame_response.value.status == 200  # the address lied, so the server served the chat …
    _blocked(page)  # … and the browser refused to show it here (frame-ancestors)
    assert any("frame-ancestors" in line and shop.origin in line for line in console), console
    assert not Visitor.objects.exists()


def _settled(page: Page) -> None:
    """The loader's open/close transition is over (it runs in the loader's shadow root)."""
    page.wait_for_function(
        "() => document.querySelector('#pivra-root').shadowRoot.getAnimations().every((a) => a.playState !== 'running')"
    )


def _blocked(page: Page) -> None:
    """The frame ended on the browser's error page: no chat, nothing the site could talk to."""
    _eventually(page, lambda: _chat_frame_url(page).startswith("chrome-error://"), "the browser blocks the frame")
    chat = page.frame_locator("iframe[title='Chat']")
    expect(chat.get_by_role("textbox", name="Message")).to_have_count(0)
    expect(chat.get_by_text("Demo bot")).to_have_count(0)


def _chat_frame_url(page: Page) -> str:
    children = [frame.url for frame in page.frames if frame != page.main_frame]
    assert len(children) <= 1, children
    return children[0] if children else ""


def _eventually(page: Page, predicate: Callable[[], bool], what: str, timeout_ms: int = 20_000) -> None:
    """Poll with Playwright's own wait, so its events (frame navigations) are processed meanwhile."""
    for _ in range(timeout_ms // 200):
        if predicate():
            return
        page.wait_for_timeout(200)
    assert predicate(), f"timed out waiting until {what}"
