"""The per-visitor rate limit as the visitor meets it: a readable countdown, and nothing they typed is lost."""

from __future__ import annotations

import re

from playwright.sync_api import Page, expect

from conversations.models import Event
from pivra.stack import AppProcesses
from tests.e2e.conftest import screenshot
from tests.e2e.widget_helpers import daphne_with, open_widget, seed_demo, send

# A no-break space keeps "s." from wrapping onto a line of its own.
NOTICE = re.compile(r"^You're sending messages too fast\. Try again in (\d+)[\u00a0 ]s\.$")


def test_a_visitor_over_the_limit_sees_a_countdown_and_keeps_their_text(page: Page, live_stack: AppProcesses) -> None:
    seed_demo()
    with daphne_with(live_stack, PIVRA_RATE_VISITOR_PER_MINUTE="3"):
        frame = open_widget(page)
        log = frame.get_by_role("log", name="Conversation")
        box = frame.get_by_role("textbox", name="Message")
        notice = frame.get_by_role("alert").filter(has_text="too fast")
        # Send until refused: three fit in a minute, but the window may turn over meanwhile.
        refused = ""
        for n in range(1, 11):
            text = f"Question number {n}: what is your return policy?"
            send(frame, text)
            accepted = log.locator(".pv-row.pv-visitor[data-seq]", has_text=text)
            expect(accepted.or_(notice)).to_be_visible()
            if notice.is_visible():
                refused = text
                break
        assert refused, "ten messages in a row were all accepted"
        stored = Event.objects.filter(author="visitor").count()
        assert stored == n - 1 and stored >= 3

        # The refused text is back in the box, not in the log, and nothing is left "sending".
        expect(box).to_have_value(refused)
        expect(log.locator(".pv-row.pv-visitor", has_text=refused)).to_have_count(0)
        expect(frame.locator(".pv-sending, .pv-failed")).to_have_count(0)
        expect(notice).to_have_text(NOTICE)
        first = notice.text_content() or ""
        match = NOTICE.match(first)
        assert match is not None and 1 <= int(match.group(1)) <= 60
        assert first.endswith("\u00a0s.")
        screenshot(page, "widget-rate-limited")
        # It counts down (or is gone once the minute is over).
        expect(frame.locator(".pv-notice")).not_to_have_text(first, timeout=5_000)
        assert Event.objects.filter(author="visitor", text=refused).count() == 0
