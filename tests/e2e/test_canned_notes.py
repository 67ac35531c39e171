"""Issue 16, items 3 and 4 in Chromium against the real stack: canned replies (an owner creates one on
the dashboard; an agent types "/" in the composer, picks it with the keyboard, its placeholders
filled, and sends it) and internal notes (an agent writes one with an @mention; the mentioned agent,
in another browser, gets a live notice that opens the conversation; the visitor's widget never shows
the note)."""

from __future__ import annotations

import re

from django.contrib.auth.models import User
from playwright.sync_api import Browser, BrowserContext, Page, expect
from playwright.sync_api import TimeoutError as PlaywrightTimeout

from canned.models import CannedReply
from chatbots.models import Chatbot, Membership
from conversations.models import Conversation, Event, Note
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from handoff.transitions.lead import lead_capture
from handoff.transitions.request import handoff_request
from pivra.stack import AppProcesses
from tests.e2e.console_helpers import LIVE, login, say, seed, seeded_visitor, shot
from tests.e2e.widget_helpers import off_thread, open_widget, send

ASKED = "Hi, my tent arrived torn. Can I get a refund?"
NOTE = "Refund approved by finance — @bob can you double-check the <b>invoice</b>?"


def _no_prompt(page: Page) -> Page:
    """Answer the desktop-notification prompt (another feature) "Not now", so it covers nothing."""
    later = page.get_by_role("button", name="Not now")
    try:
        later.first.wait_for(state="visible", timeout=3000)
    except PlaywrightTimeout:
        return page  # not offered on this page
    later.first.click()
    return page


def _live_chat(bot: Chatbot, agent: str) -> str:
    """A visitor who left a mobile number, in a live chat claimed by ``agent``."""
    visitor, conversation = seeded_visitor(bot, page="https://northwind.example/returns")
    say(visitor, conversation, "Hi, I'd like to return my tent.")
    key = str(conversation.public_id)
    handoff_request(visitor=visitor, conversation_public_id=key, trigger="button")
    lead_capture(visitor=visitor, conversation_public_id=key, phone="+44 7911 123456")
    handoff_claim(agent=User.objects.get(username=agent), conversation_public_id=key)
    return key


def _two_sams(bot_key: str) -> None:
    """Two members of the conversation's workspace called Sam (past the plan's seats: not what is tested)."""
    workspace = Conversation.objects.select_related("chatbot__workspace").get(public_id=bot_key).chatbot.workspace
    for username in ("sam.lee", "sam.roe"):
        user = User.objects.create_user(username=username, first_name="Sam")
        Membership.objects.create(workspace=workspace, user=user, role=Membership.Role.AGENT)


def test_an_owner_creates_a_canned_reply_and_an_agent_inserts_it_with_the_keyboard(
    context: BrowserContext, second_context: BrowserContext
) -> None:
    bot = seed()
    owner = _no_prompt(login(context, "admin"))
    owner.get_by_role("link", name="Canned replies").click()
    expect(owner.get_by_role("heading", name="Canned replies", exact=True)).to_be_visible()
    owner.get_by_role("link", name="+ Create your first reply").click()
    owner.get_by_label("Shortcut").fill("returns")
    owner.get_by_label("Title").fill("How returns work")
    owner.get_by_label("Reply").fill("Hi {{visitor.phone}}")
    owner.get_by_role("button", name="Create reply").click()
    expect(owner.get_by_role("alert")).to_contain_text("Unknown placeholder {{visitor.phone}}")
    shot(owner, "issue16-canned-form-error")
    owner.get_by_label("Reply").fill(
        "Thanks for getting in touch! I'm {{agent.name}} from {{workspace.name}}. We'll call you on "
        "{{visitor.mobile}} to arrange the pickup{{visitor.name}}."
    )
    owner.get_by_role("button", name="Create reply").click()
    expect(owner.get_by_text("Canned reply /returns created.")).to_be_visible()
    expect(owner.locator("[data-canned-row='returns']")).to_contain_text("How returns work")
    shot(owner, "issue16-canned-page")

    key = off_thread(_live_chat, bot=bot, agent="alice")
    agent = _no_prompt(login(second_context, "alice"))
    agent.goto(f"/dashboard/conversations/{key}/")
    _no_prompt(agent)
    box = agent.get_by_role("combobox", name="Reply to visitor")
    expect(box).to_be_editable()
    box.press_sequentially("/ret")
    picker = agent.locator("[data-canned-picker]")
    expect(picker).to_be_visible()
    expect(picker.get_by_role("option")).to_have_count(1)
    expect(picker.get_by_role("option").first).to_have_attribute("aria-selected", "true")
    shot(agent, "issue16-canned-picker")
    box.press("ArrowDown")  # one match: the selection wraps round to it
    box.press("Enter")
    expect(picker).to_be_hidden()
    filled = "Thanks for getting in touch! I'm Alice from Demo. We'll call you on +447911123456 to arrange the pickup."
    expect(box).to_have_value(filled)  # known values filled, the empty {{visitor.name}} gone
    # …and the agent is told so, the caret where the name would have gone (before the last ".").
    warning = agent.locator("[data-canned-warning]")
    expect(warning).to_have_text("No visitor name known — check the text before sending.")
    assert box.evaluate("el => [el.selectionStart, el.selectionEnd]") == [len(filled) - 1, len(filled) - 1]
    shot(agent, "issue16-canned-missing-warning")
    box.press("Enter")  # sends it
    expect(warning).to_be_hidden()
    expect(agent.locator("[data-thread] .ev-agent .ev-bubble").last).to_have_text(filled, timeout=LIVE)
    shot(agent, "issue16-canned-sent")
    assert (
        off_thread(lambda: Event.objects.filter(conversation__public_id=key, author="agent", text=filled).count()) == 1
    )
    assert off_thread(lambda: CannedReply.objects.get().shortcut) == "returns"

    # With the list open and no match, Enter is the list's: nothing is sent, the list stays open.
    box.press_sequentially("/zz")
    expect(picker).to_contain_text("No reply matches /zz")
    box.press("Enter")
    box.press("Tab")
    expect(picker).to_be_visible()
    expect(box).to_have_value("/zz")
    box.press("Escape")
    expect(picker).to_be_hidden()
    box.fill("")
    assert off_thread(lambda: Event.objects.filter(conversation__public_id=key, text="/zz").count()) == 0

    # Esc closes the list and leaves the text as typed.
    box.press_sequentially("/r")
    expect(picker).to_be_visible()
    box.press("Escape")
    expect(picker).to_be_hidden()
    expect(box).to_have_value("/r")


def test_a_note_with_a_mention_reaches_the_mentioned_agent_live_and_never_the_visitor(
    page: Page, second_context: BrowserContext, browser: Browser, live_stack: AppProcesses
) -> None:
    seed()
    frame = open_widget(page)  # the visitor, in the real widget on the demo page
    log = frame.get_by_role("log", name="Conversation")
    send(frame, ASKED)
    expect(log.locator(".pv-row.pv-ai[data-seq]")).to_have_count(1)
    frame.get_by_role("button", name="Talk to a human").click()
    expect(frame.locator("body")).to_have_attribute("data-state", "pending")
    key = off_thread(
        lambda: str(Handoff.objects.get(conversation__events__text__startswith=ASKED).conversation.public_id)
    )

    bob_context = browser.new_context(base_url=live_stack.http_url, viewport={"width": 1280, "height": 800})
    bob_context.set_default_timeout(15_000)
    try:
        bob = _no_prompt(login(bob_context, "bob"))  # on the Conversations list, not on this conversation
        alice = _no_prompt(login(second_context, "alice"))
        alice.goto(f"/dashboard/conversations/{key}/")
        _no_prompt(alice)
        alice.get_by_role("button", name="Claim").click()
        expect(alice.get_by_role("combobox", name="Reply to visitor")).to_be_editable()

        alice.get_by_role("button", name="Note").click()
        expect(alice.locator("[data-composer]")).to_have_class(re.compile(r"\bis-note\b"))
        note_box = alice.get_by_role("textbox", name="Internal note (only your team sees it)")
        note_box.fill(NOTE)
        shot(alice, "issue16-note-composer")
        note_box.press("Enter")
        note = alice.locator("[data-thread] .ev-note")
        expect(note).to_have_count(1)
        expect(note).to_contain_text("Internal note · only your team sees this")
        expect(note.locator(".note-text")).to_have_text(NOTE)  # as text: the <b> is not markup
        expect(note_box).to_have_value("")
        shot(alice, "issue16-note-thread")

        notice = bob.locator("[data-mention-notice]")
        expect(notice).to_be_visible(timeout=LIVE)
        expect(notice).to_contain_text("Alice mentioned you")
        expect(notice).to_contain_text("@bob can you double-check")
        shot(bob, "issue16-note-mention")
        notice.get_by_role("link", name="Open conversation").click()
        expect(bob).to_have_url(f"{live_stack.http_url}/dashboard/conversations/{key}/")
        expect(bob.locator("[data-thread] .ev-note .note-text")).to_have_text(NOTE)  # loaded with the thread

        # Back in Reply mode, Alice answers: the widget shows the reply — and never the note.
        alice.get_by_role("button", name="Reply", exact=True).click()
        reply_box = alice.get_by_role("combobox", name="Reply to visitor")
        reply_box.fill("Sorry about that! A refund is on its way.")
        reply_box.press("Enter")
        expect(log).to_contain_text("A refund is on its way.", timeout=LIVE)
        expect(log).not_to_contain_text("Refund approved by finance")
        expect(frame.locator("body")).not_to_contain_text("Internal note")
        shot(page, "issue16-note-widget")
        page.reload()  # the history the widget loads again: still no note
        frame = page.frame_locator("iframe[title='Chat']")
        if not frame.get_by_role("log", name="Conversation").is_visible():
            page.get_by_role("button", name="Open chat").click()
        log = frame.get_by_role("log", name="Conversation")
        expect(log).to_contain_text("A refund is on its way.", timeout=LIVE)
        expect(frame.locator("body")).not_to_contain_text("Refund approved by finance")

        # A first name two teammates share tells neither: the composer asks for the @username.
        off_thread(_two_sams, bot_key=key)
        alice.get_by_role("button", name="Note").click()
        note_box.fill("@Sam can you look too?")
        note_box.press("Enter")
        expect(alice.locator("[data-thread] .ev-note")).to_have_count(2)
        expect(alice.locator("[data-note-error]")).to_have_text(
            "Note added, but @sam matches more than one teammate, so nobody was notified — use @username."
        )
        shot(alice, "issue16-note-ambiguous")
    finally:
        bob_context.close()
    stored = off_thread(lambda: Note.objects.get(conversation__public_id=key, text=NOTE))
    assert stored.mentions == [off_thread(lambda: User.objects.get(username="bob").pk)]
    assert (
        off_thread(lambda: Conversation.objects.get(public_id=key).events.filter(text__contains="finance").count()) == 0
    )


def test_the_picker_says_why_it_has_no_list_and_never_inserts_past_the_reply_limit(
    second_context: BrowserContext,
) -> None:
    bot = seed()
    key = off_thread(_live_chat, bot=bot, agent="alice")
    agent = _no_prompt(login(second_context, "alice"))
    agent.goto(f"/dashboard/conversations/{key}/")
    _no_prompt(agent)
    box = agent.get_by_role("combobox", name="Reply to visitor")
    expect(box).to_be_editable()
    picker = agent.locator("[data-canned-picker]")
    pattern = f"**/api/console/conversations/{key}/canned-replies"

    # A refused read: the server's reason, not "Loading…" for ever.
    detail = "No such conversation in your workspaces."
    agent.route(
        pattern, lambda route: route.fulfill(status=404, json={"code": "conversation_not_found", "detail": detail})
    )
    box.press_sequentially("/x")
    expect(picker).to_contain_text(detail)
    shot(agent, "issue16-canned-load-error")
    box.press("Escape")
    box.fill("")
    agent.unroute(pattern)

    # A reply longer, once filled, than the box takes (its maxlength is PIVRA_MESSAGE_MAX_LENGTH).
    limit = int(box.get_attribute("maxlength") or "0")
    long_reply = {"id": 1, "shortcut": "long", "title": "", "text": "y" * (limit + 1), "missing": [], "gap_at": None}
    agent.route(pattern, lambda route: route.fulfill(status=200, json=[long_reply]))
    box.press_sequentially("/lo")
    expect(picker.get_by_role("option")).to_have_count(1)
    box.press("Enter")
    expect(agent.locator("[data-canned-warning]")).to_contain_text(f"a reply can be at most {limit}")
    expect(box).to_have_value("/lo")  # nothing inserted, and the list keeps Enter: nothing sent either
    expect(picker).to_be_visible()
    shot(agent, "issue16-canned-too-long")
