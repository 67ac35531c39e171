"""No silent gaps: a push the channel layer loses (pub/sub delivers at most once) is fetched by the
widget and by the console's conversation view, without a reload, in seq order.

daphne runs here with the test hook PIVRA_TEST_DROP_PUSH=1 (pivra/push_drop.py): a test arms it
with a group and a seq, and daphne drops exactly that push, so a real socket or SSE stream misses
exactly that frame. The test waits until the hook fired (its Redis key is gone) before going on.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
import redis
from django.conf import settings
from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, FrameLocator, Page, expect

from conversations.models import Conversation, Event
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from handoff.transitions.reply import handoff_reply
from pivra import push_drop
from pivra.realtime import console_group, conversation_group, visitor_group
from pivra.stack import AppProcesses
from tests.e2e.conftest import screenshot
from tests.e2e.console_helpers import RECORD_CONSOLE_FRAMES, login, say, seed, thread_seqs
from tests.e2e.widget_helpers import daphne_with, off_thread, open_widget, seed_demo, send

LIVE = 15  # s: a generous wait for the hook to fire on a loaded machine; never a speed check
# Remember every frame type the console socket receives, so the test knows the watch is in place.


@pytest.fixture(scope="module")
def dropping_daphne(live_stack: AppProcesses) -> Iterator[AppProcesses]:
    with daphne_with(live_stack, PIVRA_TEST_DROP_PUSH="1"):
        yield live_stack


@pytest.fixture
def hook(dropping_daphne: AppProcesses) -> Iterator[redis.Redis]:
    client = redis.Redis.from_url(settings.REDIS_URL)
    yield client
    for key in client.scan_iter(f"{push_drop.KEY_PREFIX}*"):
        client.delete(key)
    client.close()


def _arm(client: redis.Redis, group: str, seq: int) -> None:
    push_drop.arm(client=client, group=group, seq=seq)


def _wait_fired(client: redis.Redis, group: str, seq: int) -> None:
    """Until daphne has dropped the armed push (the hook deletes its key as it fires)."""
    deadline = time.monotonic() + LIVE
    while client.exists(push_drop.drop_key(group=group, seq=seq)):
        assert time.monotonic() < deadline, f"the push of seq {seq} to {group} was never dropped"
        time.sleep(0.05)


def _stored_seqs(conversation: Conversation) -> list[int]:
    return list(Event.objects.filter(conversation=conversation).order_by("seq").values_list("seq", flat=True))


def _widget_seqs(frame: FrameLocator) -> list[int]:
    rows = frame.get_by_role("log", name="Conversation").locator(".pv-row[data-seq]")
    return [int(s) for s in rows.evaluate_all("rows => rows.map(r => r.dataset.seq)")]


def _mark_page(frame: FrameLocator) -> None:
    """A flag in the widget's window: still there at the end means the frame was never reloaded."""
    frame.locator("body").evaluate("() => { window.__noReload = true; }")


def _never_reloaded(frame: FrameLocator) -> bool:
    return bool(frame.locator("body").evaluate("() => window.__noReload === true"))


def _gap_fetches(page: Page) -> list[str]:
    fetches: list[str] = []
    page.on(
        "request",
        lambda request: (
            fetches.append(request.url)
            if "/api/widget/events" in request.url and "after_seq=0" not in request.url
            else None
        ),
    )
    return fetches


def _live_agent(page: Page) -> tuple[FrameLocator, Conversation, User]:
    """The visitor in a live chat with Alice: the widget open, the handoff claimed."""
    seed_demo()
    alice = User.objects.get(username="alice")
    frame = open_widget(page)
    body = frame.locator("body")
    expect(body).to_have_attribute("data-connected", "true")
    send(frame, "Hi, I have a question about my order")
    log = frame.get_by_role("log", name="Conversation")
    expect(log.locator(".pv-row.pv-ai[data-seq]")).to_have_count(1)
    frame.get_by_role("button", name="Talk to a human").click()
    expect(body).to_have_attribute("data-state", "pending")
    conversation = Handoff.objects.latest("requested_at").conversation
    off_thread(handoff_claim, agent=alice, conversation_public_id=str(conversation.public_id))
    expect(body).to_have_attribute("data-state", "active")
    conversation.refresh_from_db()
    expect(log.locator(".pv-row[data-seq]")).to_have_count(len(_stored_seqs(conversation)))
    return frame, conversation, alice


def _reply(alice: User, conversation: Conversation, text: str) -> Any:
    return off_thread(
        handoff_reply,
        agent=alice,
        conversation_public_id=str(conversation.public_id),
        text=text,
        client_id=uuid.uuid4().hex,
    )


def _a_dropped_agent_reply_is_fetched_when_the_next_one_arrives(
    page: Page, client: redis.Redis, transport: str
) -> None:
    frame, conversation, alice = _live_agent(page)
    expect(frame.locator("body")).to_have_attribute("data-transport", transport)
    _mark_page(frame)
    fetches = _gap_fetches(page)
    group = visitor_group(conversation.visitor.public_id)
    lost = conversation.last_seq + 1
    _arm(client, group, lost)
    _reply(alice, conversation, "Hi! I'm Alice. Let me look that up.")
    _wait_fired(client, group, lost)
    log = frame.get_by_role("log", name="Conversation")
    assert "Let me look that up" not in (log.text_content() or "")  # the frame was really lost
    assert lost not in _widget_seqs(frame)

    _reply(alice, conversation, "Found it: your order ships tomorrow.")
    expect(log.locator(".pv-row.pv-agent")).to_have_count(2)
    expect(log.locator(".pv-row.pv-agent").first).to_contain_text("Let me look that up")
    expect(log.locator(".pv-row.pv-agent").last).to_contain_text("ships tomorrow")
    conversation.refresh_from_db()
    assert _widget_seqs(frame) == _stored_seqs(conversation)  # every event once, in order
    assert _never_reloaded(frame)
    assert any(f"after_seq={lost - 1}" in url for url in fetches), fetches
    screenshot(page, f"widget-gap-recovered-{transport}")


def test_a_dropped_push_is_recovered_on_the_websocket(page: Page, hook: redis.Redis) -> None:
    _a_dropped_agent_reply_is_fetched_when_the_next_one_arrives(page, hook, "ws")


def test_a_dropped_push_is_recovered_on_the_sse_stream(page: Page, hook: redis.Redis) -> None:
    page.add_init_script("delete window.WebSocket;")
    _a_dropped_agent_reply_is_fetched_when_the_next_one_arrives(page, hook, "sse")


def test_an_ack_past_a_gap_fetches_the_gap(page: Page, hook: redis.Redis) -> None:
    """The issue's case: on SSE, the agent's reply (N) never reaches the stream, and the visitor's
    own message (N + 1) is acknowledged over HTTP while its frame is lost too: the ack alone must
    bring N to the screen."""
    page.add_init_script("delete window.WebSocket;")
    frame, conversation, alice = _live_agent(page)
    expect(frame.locator("body")).to_have_attribute("data-transport", "sse")
    _mark_page(frame)
    fetches = _gap_fetches(page)
    group = visitor_group(conversation.visitor.public_id)
    reply_seq, message_seq = conversation.last_seq + 1, conversation.last_seq + 2
    client = hook
    _arm(client, group, reply_seq)
    _arm(client, group, message_seq)
    _reply(alice, conversation, "Could you give me the order number?")
    _wait_fired(client, group, reply_seq)

    send(frame, "It is 1234")
    _wait_fired(client, group, message_seq)
    log = frame.get_by_role("log", name="Conversation")
    expect(log.locator(".pv-row.pv-agent")).to_contain_text("order number")
    expect(log.locator(f'.pv-row.pv-visitor[data-seq="{message_seq}"]')).to_contain_text("It is 1234")
    conversation.refresh_from_db()
    assert _widget_seqs(frame) == _stored_seqs(conversation) == list(range(1, message_seq + 1))
    assert _never_reloaded(frame)
    assert any(f"after_seq={reply_seq - 1}" in url for url in fetches), fetches
    expect(frame.locator(".pv-sending")).to_have_count(0)


def test_the_console_view_recovers_a_dropped_visitor_message(context: BrowserContext, hook: redis.Redis) -> None:
    bot = seed()
    waiting = Handoff.objects.get(status="pending", chatbot=bot).conversation
    context.add_init_script(RECORD_CONSOLE_FRAMES)
    errors: list[str] = []
    view = login(context, "alice", errors)
    view.goto(f"/dashboard/conversations/{waiting.public_id}/")
    view.wait_for_function("() => window.__pivraFrames.includes('watching')")
    view.evaluate("() => { window.__noReload = true; }")
    fetches: list[str] = []
    view.on("request", lambda r: fetches.append(r.url) if "/events?after_seq=" in r.url else None)

    waiting.refresh_from_db()
    lost = waiting.last_seq + 1
    # The frame reaches the view by two groups (the watched conversation and the workspace's queue).
    groups = [conversation_group(waiting.public_id), console_group(bot.workspace_id)]
    for group in groups:
        _arm(hook, group, lost)
    off_thread(say, visitor=waiting.visitor, conversation=waiting, text="We are 24 scouts, by the way.")
    for group in groups:
        _wait_fired(hook, group, lost)
    # (A queue frame may make the view re-read its state and fetch the hole already; either way
    # the next event past the hole does.)

    off_thread(say, visitor=waiting.visitor, conversation=waiting, text="And we need 8 tents.")
    bubbles = view.locator(".ev-visitor .ev-bubble")
    expect(bubbles.last).to_have_text("And we need 8 tents.")
    expect(view.locator(f'[data-thread] [data-seq="{lost}"] .ev-bubble')).to_have_text("We are 24 scouts, by the way.")
    waiting.refresh_from_db()
    assert thread_seqs(view) == _stored_seqs(waiting)
    assert view.evaluate("() => window.__noReload === true")
    assert any(f"after_seq={lost - 1}" in url for url in fetches), fetches
    assert errors == []
    screenshot(view, "console-gap-recovered")


# In the widget's frame: its own module instances (an import() of a URL already loaded returns it).
PHANTOM_SEQS = """async () => {
  const href = (name) => document.querySelector(`link[rel=modulepreload][href$="/chat/${name}"]`).href;
  const gaps = await import(href("gaps.js"));
  const { S } = await import(href("state.js"));
  const before = S.lastSeq;
  // Seqs this conversation does not have, as from an ack that raced a switch of conversation.
  gaps.noteServerSeq(before + 40, 0);
  gaps.markSeen(before + 41);
  const settled = () => !S.gapInFlight && !S.gapTimer;
  for (let i = 0; i < 250 && (i === 0 || !settled()); i++) await new Promise((r) => setTimeout(r, 20));
  return { before, after: S.lastSeq, server: S.serverSeq, above: [...S.seenAbove], settled: settled() };
}"""


def test_seqs_the_server_does_not_have_cost_one_fetch_not_a_loop(page: Page, hook: redis.Redis) -> None:
    seed_demo()
    frame = open_widget(page)
    expect(frame.locator("body")).to_have_attribute("data-connected", "true")
    send(frame, "What is your return policy?")
    log = frame.get_by_role("log", name="Conversation")
    expect(log).to_contain_text("60 days")
    fetches = _gap_fetches(page)
    result = frame.locator("body").evaluate(PHANTOM_SEQS)
    assert result["before"] == 2
    assert result == {"before": 2, "after": 2, "server": 2, "above": [], "settled": True}
    assert [url.split("after_seq=")[1] for url in fetches] == ["2"]  # one fetch, then it stopped
    assert _widget_seqs(frame) == [1, 2]
