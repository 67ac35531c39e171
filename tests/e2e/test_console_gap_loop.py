"""A console conversation view whose last events were deleted (staff can, in the admin) fetches the
"hole" up to the conversation's last_seq once and stops: the answer's `has_more` says it is complete,
so a page with fewer seqs than last_seq is not taken for a full one and refetched in a loop."""

from __future__ import annotations

from playwright.sync_api import BrowserContext

from conversations.models import Conversation, Event
from handoff.models import Handoff
from tests.e2e.console_helpers import RECORD_CONSOLE_FRAMES, login, seed
from tests.e2e.widget_helpers import off_thread

# Remember every frame type the console socket receives, so the test knows the watch is in place.


def _delete_the_last_event(conversation: Conversation) -> int:
    conversation.refresh_from_db()
    Event.objects.filter(conversation=conversation, seq=conversation.last_seq).delete()
    return conversation.last_seq


def test_a_deleted_last_event_costs_one_fetch_not_a_loop(context: BrowserContext) -> None:
    bot = seed()
    waiting = off_thread(lambda: Handoff.objects.get(status="pending", chatbot=bot).conversation)
    last_seq = off_thread(_delete_the_last_event, conversation=waiting)
    context.add_init_script(RECORD_CONSOLE_FRAMES)
    errors: list[str] = []
    view = login(context, "alice", errors)
    fetches: list[str] = []
    view.on("request", lambda r: fetches.append(r.url) if "/events?after_seq=" in r.url else None)
    view.goto(f"/dashboard/conversations/{waiting.public_id}/")
    view.wait_for_function("() => window.__pivraFrames.includes('watching')")  # says last_seq: the view is behind
    view.wait_for_function(
        "() => performance.getEntriesByType('resource').some((e) => e.name.includes('/events?after_seq='))"
    )
    view.wait_for_timeout(3000)  # a loop would ask again and again meanwhile (schedule(0) before the fix)
    assert fetches and all(url.endswith(f"after_seq={last_seq - 1}") for url in fetches), fetches
    assert len(fetches) <= 2, fetches  # the watch's last_seq, and a state refresh's at most
    assert errors == []
