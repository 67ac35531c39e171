"""Attachments in Chromium against the real stack: the visitor sends a photo from the widget's
paperclip and the agent sees its thumbnail; the agent sends a PDF from the console and the visitor
downloads it; a file of the wrong kind is refused with a readable line in the widget; the console's
links are refused to another workspace's agent and another visitor, and renewed when they fail."""

from __future__ import annotations

import io
import time

from django.contrib.auth.models import User
from playwright.sync_api import Browser, BrowserContext, FrameLocator, Locator, Page, expect

from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from pivra.stack import AppProcesses
from tests.attachment_helpers import HTML_BYTES, PDF_BYTES, jpeg_with_gps
from tests.e2e.conftest import screenshot
from tests.e2e.console_helpers import PASSWORD, login, shot
from tests.e2e.widget_helpers import off_thread, open_widget, send
from tests.handoff_helpers import enable_handoff, wait_for_agents


def _seed() -> None:
    from chatbots.demo import demo_seed
    from chatbots.models import Chatbot

    demo_seed(password=PASSWORD)
    bot = Chatbot.objects.get(workspace__slug="demo", name="Demo bot")
    wait_for_agents(enable_handoff(bot, keywords=bot.handoff_keywords, timeout=3600))


def _live_chat(page: Page) -> tuple[FrameLocator, str]:
    """The visitor in the widget, in a live chat claimed by Alice."""
    off_thread(_seed)
    frame = open_widget(page)
    send(frame, "Hi, the box arrived damaged")
    log = frame.get_by_role("log", name="Conversation")
    expect(log.locator(".pv-row.pv-ai[data-seq]")).to_have_count(1)
    frame.get_by_role("button", name="Talk to a human").click()
    expect(frame.locator("body")).to_have_attribute("data-state", "pending")
    conversation = str(Handoff.objects.latest("requested_at").conversation.public_id)
    alice = User.objects.get(username="alice")
    off_thread(handoff_claim, agent=alice, conversation_public_id=conversation)
    expect(frame.locator("body")).to_have_attribute("data-state", "active")
    return frame, conversation


def _photo() -> bytes:
    """A 1200x800 photo (with GPS in its EXIF) that is more than one colour, so a thumbnail shows something."""
    from PIL import Image, ImageDraw

    raw = Image.open(io.BytesIO(jpeg_with_gps((1200, 800), orientation=1))).convert("RGB")
    draw = ImageDraw.Draw(raw)
    draw.rectangle((0, 500, 1200, 800), fill=(60, 140, 70))
    draw.ellipse((820, 80, 1000, 260), fill=(250, 210, 60))
    draw.rectangle((200, 300, 600, 560), fill=(140, 90, 50))
    out = io.BytesIO()
    raw.save(out, format="JPEG", exif=Image.open(io.BytesIO(jpeg_with_gps((8, 8), orientation=1))).info["exif"])
    return out.getvalue()


def _wait_loaded(image: Locator) -> None:
    """Until the <img> has decoded pixels (a blob: URL in the widget, the signed link in the console)."""
    for _ in range(150):
        if image.evaluate("img => img.complete && img.naturalWidth > 0"):
            return
        time.sleep(0.1)
    raise AssertionError("the image never loaded")


def test_the_visitor_sends_a_photo_and_the_agent_sees_its_thumbnail(page: Page, second_context: BrowserContext) -> None:
    frame, conversation = _live_chat(page)
    agent = login(second_context, "alice")
    agent.goto(f"/dashboard/conversations/{conversation}/")
    expect(agent.locator("[data-thread]")).to_contain_text("the box arrived damaged")

    frame.locator("input[type=file]").set_input_files(
        {"name": "damaged-box.jpg", "mimeType": "image/jpeg", "buffer": _photo()}
    )
    visitor_thumb = frame.locator(".pv-row.pv-visitor[data-seq] .pv-att-thumb img")
    expect(visitor_thumb).to_be_visible()
    _wait_loaded(visitor_thumb)
    screenshot(page, "issue16-attachment-widget-photo")

    agent_thumb = agent.locator("[data-thread] .ev-visitor .att-thumb img")
    expect(agent_thumb).to_be_visible()
    _wait_loaded(agent_thumb)
    assert agent_thumb.evaluate("img => img.naturalWidth") == 320  # the 320 px thumbnail, not the photo
    expect(agent.locator("[data-thread] .att-caption")).to_contain_text("damaged-box.jpg")
    shot(agent, "issue16-attachment-console-thumbnail")

    # The visitor opens the full image in the widget's overlay.
    frame.locator(".pv-att-thumb").click()
    full = frame.locator(".pv-lightbox img")
    expect(full).to_be_visible()
    _wait_loaded(full)
    assert full.evaluate("img => img.naturalWidth") == 1200  # the full image, from its blob: URL
    screenshot(page, "issue16-attachment-widget-lightbox")
    frame.locator(".pv-lightbox").press("Escape")
    expect(full).to_have_count(0)

    # The agent's reload renders the same thumbnail server-side, with fresh signed links.
    agent.reload()
    expect(agent.locator("[data-thread] .ev-visitor .att-thumb img")).to_be_visible()


def test_the_agent_sends_a_pdf_and_the_visitor_downloads_it(page: Page, second_context: BrowserContext) -> None:
    frame, conversation = _live_chat(page)
    agent = login(second_context, "alice")
    agent.goto(f"/dashboard/conversations/{conversation}/")
    expect(agent.locator("[data-attach]")).to_be_enabled()
    agent.locator("[data-attach-input]").set_input_files(
        {"name": "Returns form.pdf", "mimeType": "application/pdf", "buffer": PDF_BYTES}
    )
    expect(agent.locator("[data-thread] .ev-agent .att-file")).to_contain_text("Returns form.pdf")
    agent.locator("[data-composer]").scroll_into_view_if_needed()
    shot(agent, "issue16-attachment-console-pdf")

    link = frame.locator(".pv-row.pv-agent[data-seq] .pv-att-file")
    expect(link).to_contain_text("Returns form.pdf")
    expect(link).to_contain_text(f"{len(PDF_BYTES)} B")
    screenshot(page, "issue16-attachment-widget-pdf")
    with page.expect_download() as info:
        link.click()
    download = info.value
    assert download.suggested_filename == "Returns form.pdf"
    with open(download.path(), "rb") as saved:
        assert saved.read() == PDF_BYTES


def test_a_file_that_is_not_an_image_or_pdf_is_refused_readably(page: Page) -> None:
    frame, _ = _live_chat(page)
    frame.locator("input[type=file]").set_input_files(
        {"name": "invoice.png", "mimeType": "image/png", "buffer": HTML_BYTES}
    )
    failed = frame.locator(".pv-row.pv-failed")
    expect(failed).to_contain_text("Only images (PNG, JPEG, GIF, WebP) and PDF files can be sent.")
    screenshot(page, "issue16-attachment-widget-refused")


def _outsiders() -> str:
    """Mallory, an agent of another workspace (she logs in), and another visitor of the same chatbot
    (their token is returned)."""
    from chatbots.models import Chatbot
    from pivra.widget.tokens import visitor_token
    from tests.factories import make_user, make_workspace
    from tests.handoff_helpers import new_visitor

    make_workspace("Elsewhere", owner=make_user("mallory", password=PASSWORD))
    visitor, _ = new_visitor(Chatbot.objects.get(workspace__slug="demo", name="Demo bot"))
    return visitor_token(visitor)


def test_console_links_are_refused_to_another_workspaces_agent_and_another_visitor(
    page: Page, second_context: BrowserContext, browser: Browser, live_stack: AppProcesses
) -> None:
    """Acceptance: the console's signed, unexpired thumbnail and image links, read off the page, are
    404 attachment_not_found for another workspace's signed-in agent and for another visitor's token."""
    frame, conversation = _live_chat(page)
    agent = login(second_context, "alice")
    agent.goto(f"/dashboard/conversations/{conversation}/")
    frame.locator("input[type=file]").set_input_files({"name": "box.jpg", "mimeType": "image/jpeg", "buffer": _photo()})
    thumb = agent.locator("[data-thread] .ev-visitor .att-thumb img")
    _wait_loaded(thumb)
    urls = [thumb.get_attribute("src") or "", agent.locator("[data-thread] .att-thumb").get_attribute("href") or ""]
    assert all(url.startswith("/api/attachments/") and "sig=" in url for url in urls)
    assert all(second_context.request.get(url).status == 200 for url in urls)  # the links are valid

    token = off_thread(_outsiders)
    mallory_context = browser.new_context(base_url=live_stack.http_url)
    stranger_context = browser.new_context(base_url=live_stack.http_url)
    try:
        login(mallory_context, "mallory")
        for url in urls:
            for answer in (
                mallory_context.request.get(url),
                stranger_context.request.get(url, headers={"Authorization": f"Bearer {token}"}),
            ):
                assert answer.status == 404, (url, answer.status)
                assert answer.json()["code"] == "attachment_not_found"
    finally:
        mallory_context.close()
        stranger_context.close()

    # A link that stops working (expired, HTTP 403) is renewed from the console API, like the widget's.
    thumb.evaluate("img => { img.src = img.src.replace(/sig=[^&]*/, 'sig=1:expired'); }")
    for _ in range(150):
        if thumb.evaluate("img => !img.src.includes('sig=1:expired') && img.complete && img.naturalWidth > 0"):
            break
        time.sleep(0.1)
    else:
        raise AssertionError("the console never renewed the thumbnail's link")
