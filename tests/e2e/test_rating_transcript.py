"""Issue 16, items 7 and 8 in Chromium against the real stack: an agent resolves a live chat in the
console; the visitor answers "How did we do?" with 👎 and a comment; the agent's thread shows it live
and the Analytics page counts it. Then the visitor asks for the transcript by email on the resolved
screen, and the agent sends it from the conversation page: the stack's Celery worker delivers both
to a real SMTP server on loopback (HTML + text)."""

from __future__ import annotations

import re
import time

from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect

from chatbots.models import Chatbot
from conversations.models import Conversation, Note
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from handoff.transitions.resolve import handoff_resolve
from tests.e2e.conftest import SmtpSink, screenshot
from tests.e2e.console_helpers import login
from tests.e2e.widget_helpers import DEMO_PASSWORD, off_thread, open_widget, seed_demo, send

LIVE = 10_000
COMMENT = "Took a while <b>but</b> solved"


def _wait_for_mail(sink: SmtpSink, address: str, count: int = 1, seconds: float = 60) -> None:
    deadline = time.monotonic() + seconds
    while len(sink.to(address)) < count:
        assert time.monotonic() < deadline, f"no email to {address} after {seconds} s"
        time.sleep(0.25)


def test_rating_after_resolve_then_the_transcript_by_email(
    page: Page, second_context: BrowserContext, smtp_sink: SmtpSink
) -> None:
    seed_demo()
    errors: list[str] = []
    page.on("pageerror", lambda error: errors.append(str(error)))
    User.objects.filter(username="alice").update(first_name="Alice")

    # The visitor asks for a person; Alice claims, answers and resolves in the console.
    frame = open_widget(page)
    body = frame.locator("body")
    send(frame, "My tent pole <script>alert(1)</script> snapped")
    log = frame.get_by_role("log", name="Conversation")
    expect(log.locator(".pv-row.pv-ai[data-seq]")).to_have_count(1)
    frame.get_by_role("button", name="Talk to a human").click()
    expect(body).to_have_attribute("data-state", "pending")
    conversation = Handoff.objects.latest("requested_at").conversation

    alice = login(second_context, "alice", errors, password=DEMO_PASSWORD)
    alice.goto(f"/dashboard/conversations/{conversation.public_id}/")
    alice.get_by_role("button", name="Claim").click()
    box = alice.get_by_placeholder("Reply to visitor")
    expect(box).to_be_enabled()
    box.fill("Sorry about that! A replacement pole ships today.")
    box.press("Enter")
    expect(log).to_contain_text("A replacement pole ships today.", timeout=LIVE)
    Note.objects.create(conversation=conversation, author_name="alice", text="INTERNAL: customer since 2019")
    alice.get_by_role("button", name="Resolve").click()
    alice.locator("[data-resolve-dialog]").get_by_role("button", name="Yes, resolve", exact=True).click()
    expect(alice.locator("[data-badge]")).to_have_text("Resolved")

    # The widget asks "How did we do?"; the visitor picks 👎 and leaves a comment.
    expect(body).to_have_attribute("data-state", "resolved", timeout=LIVE)
    survey = frame.get_by_role("region", name="How did we do?")
    expect(survey).to_be_visible()
    expect(survey.get_by_role("button", name="Good")).to_be_visible()
    screenshot(page, "issue16-rating-widget-question")
    survey.get_by_role("button", name="Bad").click()
    expect(survey.get_by_role("button", name="Bad")).to_have_attribute("aria-pressed", "true")
    survey.get_by_label("Anything to add? (optional)").fill(COMMENT)
    screenshot(page, "issue16-rating-widget-comment")
    survey.get_by_role("button", name="Send feedback").click()
    expect(frame.get_by_text("Thanks for your feedback!")).to_be_visible()
    expect(log).to_contain_text("You rated the conversation: bad")
    screenshot(page, "issue16-rating-widget-thanks")

    stored = Conversation.objects.get(pk=conversation.pk)
    assert (stored.rating, stored.rating_comment) == (1, COMMENT)

    # Alice's thread shows the rating live, as text.
    rating_line = alice.locator(".ev-system").filter(has_text="Visitor rated")
    expect(rating_line).to_contain_text(f"\U0001f44e Bad · \u201c{COMMENT}\u201d", timeout=LIVE)
    expect(alice.locator(".ev-system b")).to_have_count(0)
    screenshot(alice, "issue16-rating-console-thread")

    # The Analytics page counts it: handled by a person, Alice, 0% positive.
    alice.goto("/dashboard/analytics/")
    person = alice.locator('[data-satisfaction="person"]')
    expect(person.locator('[data-cell="rated"]')).to_have_text("1")
    expect(person.locator('[data-cell="positive"]')).to_have_text("0%")
    expect(person.locator('[data-cell="average"]')).to_have_text("1.0")
    agent = alice.locator("[data-satisfaction-agent]").filter(has_text="Alice")
    expect(agent.locator('[data-cell="rated"]')).to_have_text("1")
    alice.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    screenshot(alice, "issue16-rating-analytics")

    # The visitor asks for the transcript on the resolved screen: a bad address first.
    frame.get_by_role("button", name="Email me the transcript").click()
    email = frame.get_by_label("Your email address")
    email.fill("not-an-address")
    frame.locator(".pv-transcript").get_by_role("button", name="Send").click()
    expect(frame.locator("#pv-transcript-error")).to_have_text("Please enter a valid email address.")
    screenshot(page, "issue16-transcript-widget-invalid")
    email.fill("visitor@example.com")
    frame.locator(".pv-transcript").get_by_role("button", name="Send").click()
    expect(
        frame.get_by_text("Transcript queued for visitor@example.com. It should arrive in a few minutes.")
    ).to_be_visible()
    screenshot(page, "issue16-transcript-widget-sent")

    _wait_for_mail(smtp_sink, "visitor@example.com")
    [message] = smtp_sink.to("visitor@example.com")
    assert message["Subject"] == "Your conversation with Demo bot"
    text = message.get_body(preferencelist=("plain",)).get_content()  # type: ignore[union-attr]
    html = message.get_body(preferencelist=("html",)).get_content()  # type: ignore[union-attr]
    assert "You: My tent pole <script>alert(1)</script> snapped" in text
    assert "Alice: Sorry about that! A replacement pole ships today." in text
    assert "My tent pole &lt;script&gt;alert(1)&lt;/script&gt; snapped" in html
    assert "<script>" not in html
    assert "INTERNAL" not in text and "INTERNAL" not in html

    # The agent sends it too, from the conversation page's Export menu.
    alice.goto(f"/dashboard/conversations/{conversation.public_id}/")
    alice.get_by_text("Export", exact=True).click()
    alice.get_by_role("menuitem", name="Email transcript…").click()
    dialog = alice.locator("[data-transcript-dialog]")
    dialog.get_by_label("Email address").fill("lead@example.com")
    screenshot(alice, "issue16-transcript-console-dialog")
    dialog.get_by_role("button", name="Send transcript").click()
    expect(dialog.get_by_role("status")).to_have_text(
        "Transcript queued for lead@example.com: it goes out in a moment."
    )
    screenshot(alice, "issue16-transcript-console-sent")
    _wait_for_mail(smtp_sink, "lead@example.com")
    [sent] = smtp_sink.to("lead@example.com")
    assert sent.get_body(preferencelist=("html",)) is not None
    assert sent.get_body(preferencelist=("plain",)) is not None
    assert errors == []


def test_five_stars_without_a_comment_and_the_survey_stays_answered_after_a_reload(page: Page) -> None:
    bot = seed_demo()
    Chatbot.objects.filter(pk=bot.pk).update(satisfaction_survey="five")
    alice = User.objects.get(username="alice")
    frame = open_widget(page)
    body = frame.locator("body")
    frame.get_by_role("button", name="Talk to a human").click()
    expect(body).to_have_attribute("data-state", "pending")
    key = str(Handoff.objects.latest("requested_at").conversation.public_id)
    off_thread(handoff_claim, agent=alice, conversation_public_id=key)
    off_thread(handoff_resolve, agent=alice, conversation_public_id=key)
    expect(body).to_have_attribute("data-state", "resolved", timeout=LIVE)

    survey = frame.get_by_role("region", name="How did we do?")
    stars = survey.get_by_role("button", name=re.compile(r"^\d stars?$"))
    expect(stars).to_have_count(5)
    survey.get_by_role("button", name="4 stars").click()
    expect(survey.locator(".pv-survey-pick.pv-on")).to_have_count(4)
    screenshot(page, "issue16-rating-widget-stars")
    survey.get_by_role("button", name="Send feedback").click()
    expect(frame.get_by_text("Thanks for your feedback!")).to_be_visible()
    expect(frame.get_by_role("log", name="Conversation")).to_contain_text("You rated the conversation 4/5")
    assert Conversation.objects.get(public_id=key).rating == 4

    page.reload()
    page.get_by_role("button", name="Open chat").click()
    frame = page.frame_locator("iframe[title='Chat']")
    expect(frame.get_by_text("Thanks for your feedback!")).to_be_visible()
    expect(frame.get_by_role("button", name="4 stars")).to_have_count(0)
