"""The widget in the visitor's language (issue 17), in Chromium with a locale per context: French all
the way to Team busy and the phone error, Arabic right to left, the owner's fixed language and the
owner's French greeting."""

# ruff: noqa: RUF001  (French typography: its apostrophe is U+2019)

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from playwright.sync_api import Browser, BrowserContext, FrameLocator, Page, expect

from chatbots.languages import chatbot_text_variants_set
from chatbots.models import Chatbot
from chatbots.services import chatbot_update_handoff_settings
from conversations.models import Conversation
from pivra.stack import AppProcesses
from tests.e2e.conftest import screenshot
from tests.e2e.widget_helpers import seed_demo

FRENCH_GREETING = "Bonjour ! Posez-nous vos questions sur votre commande."
FRENCH_BUSY = "Toute l’équipe est occupée. Laissez votre numéro de mobile, on vous rappelle."


@contextmanager
def _visitor(browser: Browser, live_stack: AppProcesses, locale: str) -> Iterator[Page]:
    context: BrowserContext = browser.new_context(
        base_url=live_stack.http_url, locale=locale, viewport={"width": 1280, "height": 800}
    )
    try:
        yield context.new_page()
    finally:
        context.close()


def _open(page: Page, launcher: str) -> FrameLocator:
    page.goto("/demo/")
    page.get_by_role("button", name=launcher).click()
    frame = page.frame_locator("#pivra-frame")
    expect(frame.locator(".pv-composer textarea, .pv-composer input").first).to_be_editable()
    return frame


def test_a_french_visitor_gets_the_whole_flow_in_french(
    browser: Browser, live_stack: AppProcesses, transactional_db: None
) -> None:
    bot = seed_demo()
    chatbot_update_handoff_settings(
        chatbot=bot,
        enabled=True,
        keywords=bot.handoff_keywords,
        waiting_message=bot.handoff_waiting_message,
        timeout_seconds=5,
        busy_message=bot.handoff_busy_message,
    )
    chatbot_text_variants_set(
        chatbot=Chatbot.objects.get(pk=bot.pk),
        language="fr",
        texts={"greeting": FRENCH_GREETING, "busy": FRENCH_BUSY},
        keywords=[],
    )
    with _visitor(browser, live_stack, "fr-FR") as page:
        frame = _open(page, "Ouvrir le chat")
        expect(frame.locator("html")).to_have_attribute("lang", "fr")
        expect(frame.locator("html")).to_have_attribute("dir", "ltr")
        expect(frame.get_by_role("textbox", name="Message")).to_have_attribute("placeholder", "Écrivez un message…")
        expect(frame.get_by_text(FRENCH_GREETING)).to_be_visible()
        expect(frame.locator(".pv-status-text")).to_have_text("Assistant IA")
        body = frame.locator("body")

        frame.get_by_role("button", name="Parler à un conseiller").click()
        expect(body).to_have_attribute("data-state", "pending")
        expect(frame.get_by_text("En attente d’un membre de l’équipe…")).to_be_visible()
        expect(frame.get_by_text("Vous avez demandé à parler à un membre de l’équipe")).to_be_visible()

        # Team busy: the owner's French busy text, our words around it.
        expect(body).to_have_attribute("data-state", "busy", timeout=20_000)
        expect(frame.get_by_text(FRENCH_BUSY)).to_be_visible()
        expect(frame.locator(".pv-status-text")).to_have_text("Équipe indisponible pour le moment")
        expect(frame.get_by_text("Aucun membre de l’équipe n’était disponible")).to_be_visible()
        phone = frame.get_by_label("Numéro de mobile")
        frame.get_by_role("button", name="Envoyer").click()
        error = frame.locator("#pv-phone-error")
        expect(error).to_have_text("Veuillez saisir votre numéro de mobile.")  # the widget's own check
        phone.fill("12")
        frame.get_by_role("button", name="Envoyer").click()
        # The server's refusal, worded in the conversation's language.
        expect(error).to_have_text("Ce numéro semble incorrect. Vérifiez-le, indicatif du pays compris.")
        screenshot(page, "widget-fr-team-busy")
        phone.fill("06 12 34 56 78")  # a French mobile written the national way (the browser says fr-FR)
        frame.get_by_role("button", name="Envoyer").click()
        thanks = frame.locator(".pv-thanks")
        expect(thanks).to_have_text("Merci, nous vous recontacterons au +33612345678")
        expect(thanks.locator("bdi")).to_have_text("+33612345678")
        expect(frame.get_by_role("button", name="Continuer avec l’IA")).to_be_visible()
        conversation = Conversation.objects.get(handoff__isnull=False)
        assert conversation.language == "fr"
        assert conversation.events.get(kind="handoff.timed_out").text == FRENCH_BUSY

        frame.get_by_role("button", name="Continuer avec l’IA").click()
        expect(body).to_have_attribute("data-state", "ai")
        fresh = Conversation.objects.exclude(pk=conversation.pk).get(visitor=conversation.visitor)
        assert fresh.language == "fr"  # "Continue with AI" keeps the language


def test_an_arabic_visitor_gets_a_right_to_left_widget(
    browser: Browser, live_stack: AppProcesses, transactional_db: None
) -> None:
    seed_demo()
    with _visitor(browser, live_stack, "ar") as page:
        frame = _open(page, "فتح الدردشة")
        html = frame.locator("html")
        expect(html).to_have_attribute("lang", "ar")
        expect(html).to_have_attribute("dir", "rtl")
        expect(frame.get_by_role("button", name="التحدث إلى شخص")).to_be_visible()
        # The launcher and the panel sit bottom left on the host page.
        launcher = page.get_by_role("button", name="إغلاق الدردشة")
        box = launcher.bounding_box()
        assert box is not None and box["x"] < 640, box
        panel = page.locator("#pivra-frame").bounding_box()
        assert panel is not None and panel["x"] < 640, panel
        composer = frame.get_by_role("textbox", name="الرسالة")
        composer.fill("مرحبا، أحتاج إلى مساعدة بخصوص طلبي 12345")
        composer.press("Enter")
        visitor_bubble = frame.locator(".pv-visitor .pv-bubble").first
        expect(visitor_bubble).to_be_visible()
        greeting = frame.locator(".pv-greeting .pv-bubble")
        mine, theirs = visitor_bubble.bounding_box(), greeting.bounding_box()
        assert mine is not None and theirs is not None
        # Mirrored: the visitor's bubble on the inline-end side (left), the bot's on the right.
        assert mine["x"] < theirs["x"], (mine, theirs)
        assert theirs["x"] + theirs["width"] > mine["x"] + mine["width"]
        expect(frame.locator(".pv-ai .pv-bubble").nth(1)).to_be_visible(timeout=30_000)
        screenshot(page, "widget-rtl-ar")
        assert Conversation.objects.get().language == "ar"


def test_the_owners_fixed_language_overrides_the_browser_and_variants_follow_the_visitor(
    browser: Browser, live_stack: AppProcesses, transactional_db: None
) -> None:
    bot = seed_demo()
    chatbot_text_variants_set(chatbot=bot, language="fr", texts={"greeting": FRENCH_GREETING}, keywords=[])
    default_greeting = Chatbot.objects.get(pk=bot.pk).greeting
    # An English browser sees the default greeting.
    with _visitor(browser, live_stack, "en-US") as page:
        frame = _open(page, "Open chat")
        expect(frame.locator("html")).to_have_attribute("lang", "en")
        expect(frame.get_by_text(default_greeting)).to_be_visible()
        expect(frame.get_by_text(FRENCH_GREETING)).to_have_count(0)
    with _visitor(browser, live_stack, "fr-FR") as page:
        frame = _open(page, "Ouvrir le chat")
        expect(frame.get_by_text(FRENCH_GREETING)).to_be_visible()
    # The owner fixes French: an English browser gets French too.
    Chatbot.objects.filter(pk=bot.pk).update(language="fr")
    with _visitor(browser, live_stack, "en-US") as page:
        frame = _open(page, "Ouvrir le chat")
        expect(frame.locator("html")).to_have_attribute("lang", "fr")
        expect(frame.get_by_role("button", name="Parler à un conseiller")).to_be_visible()
        expect(frame.get_by_text(FRENCH_GREETING)).to_be_visible()
    # And Arabic fixed: a French browser gets a right-to-left widget.
    Chatbot.objects.filter(pk=bot.pk).update(language="ar")
    with _visitor(browser, live_stack, "fr-FR") as page:
        frame = _open(page, "فتح الدردشة")
        expect(frame.locator("html")).to_have_attribute("dir", "rtl")
