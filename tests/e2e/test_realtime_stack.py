"""The SSE stream and the handoff timer against the real stack (no browser)."""

from __future__ import annotations

import json
import time
from typing import Any

import httpx
import pytest

from chatbots.models import Chatbot
from chatbots.services import chatbot_update_handoff_settings
from handoff.models import Handoff
from pivra.stack import AppProcesses
from tests.e2e.widget_helpers import seed_demo
from tests.handoff_helpers import wait_for_agents


def _session(base: str, public_key: str) -> dict[str, Any]:
    return httpx.post(f"{base}/api/widget/session", json={"public_key": public_key}, timeout=10).json()


def _post(base: str, token: str, path: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{base}/api/widget{path}", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10)


def _demo_bot_with_timeout(seconds: int) -> Chatbot:
    bot = seed_demo()
    chatbot_update_handoff_settings(
        chatbot=bot,
        enabled=True,
        keywords=[],
        waiting_message=bot.handoff_waiting_message,
        timeout_seconds=seconds,
        busy_message=bot.handoff_busy_message,
    )
    # These tests time out a waiting request: with nobody online (no console open) the product
    # default would skip the wait, so the outcome would hang on another test's lingering presence.
    return wait_for_agents(bot)


def _wait_until_busy(handoff: Handoff, *, seconds: float = 60) -> None:
    give_up = time.monotonic() + seconds
    while time.monotonic() < give_up:
        handoff.refresh_from_db()
        if handoff.status == "busy":
            return
        time.sleep(0.25)
    raise AssertionError(f"the handoff is still {handoff.status!r} after {seconds:g} s")


def _read_sse(response: httpx.Response, want: int) -> list[tuple[str | None, str, dict[str, Any]]]:
    """Parse frames until ``want`` event frames arrived: (id, event, data)."""
    frames: list[tuple[str | None, str, dict[str, Any]]] = []
    frame_id, name, data = None, "message", ""
    for line in response.iter_lines():
        if line.startswith(":"):
            continue
        if line == "":
            if data:
                frames.append((frame_id, name, json.loads(data)))
                if sum(1 for f in frames if f[1] == "event") >= want:
                    return frames
            frame_id, name, data = None, "message", ""
            continue
        field, _, value = line.partition(": ")
        if field == "id":
            frame_id = value
        elif field == "event":
            name = value
        elif field == "data":
            data += value
    return frames


def test_sse_resumes_from_last_event_id_and_streams_live(live_stack: AppProcesses, transactional_db: None) -> None:
    base = live_stack.http_url
    bot = seed_demo()
    session = _session(base, bot.public_key)
    token, conversation = session["token"], session["state"]["conversation"]
    for n in range(3):
        assert _post(base, token, "/messages", {"client_id": f"s{n}", "text": f"hello {n}"}).status_code == 200
    headers = {"Authorization": f"Bearer {token}", "Last-Event-ID": "2"}
    with httpx.stream(
        "GET", f"{base}/api/widget/stream", params={"conversation": conversation}, headers=headers, timeout=15
    ) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        frames = _read_sse(response, want=1)
        assert frames[0][1] == "welcome"
        events = [f for f in frames if f[1] == "event"]
        # seq 1 and 2 were seen; the stream starts with what was missed (seq 3 onwards).
        assert events[0][0] == "3" and events[0][2]["seq"] == 3
    visitor_seq = [f[2]["seq"] for f in events]
    assert visitor_seq == sorted(visitor_seq)


def test_sse_never_shows_another_visitors_conversation(live_stack: AppProcesses, transactional_db: None) -> None:
    base = live_stack.http_url
    bot = seed_demo()
    a, b = _session(base, bot.public_key), _session(base, bot.public_key)
    _post(base, b["token"], "/messages", {"client_id": "b1", "text": "B's secret"})
    headers = {"Authorization": f"Bearer {a['token']}", "Last-Event-ID": "0"}
    with httpx.stream(
        "GET",
        f"{base}/api/widget/stream",
        params={"conversation": b["state"]["conversation"]},
        headers=headers,
        timeout=15,
    ) as response:
        frames = []
        for line in response.iter_lines():
            if line.startswith("data: "):
                frames.append(json.loads(line[6:]))
                if frames[-1]["type"] == "welcome":
                    break
        assert frames[-1]["state"]["conversation"] == a["state"]["conversation"]
    unauthenticated = httpx.get(f"{base}/api/widget/stream", headers={"Authorization": "Bearer forged"}, timeout=10)
    assert unauthenticated.status_code == 401
    assert unauthenticated.json()["code"] == "not_authenticated"


@pytest.mark.timeout(120)
def test_a_timeout_still_fires_after_the_worker_is_killed_and_restarted(
    live_stack: AppProcesses, transactional_db: None
) -> None:
    base = live_stack.http_url
    session = _session(base, _demo_bot_with_timeout(5).public_key)
    live_stack.kill("worker")  # the expiry task is queued with nobody to run it
    try:
        assert _post(base, session["token"], "/handoff", {"client_id": "h"}).status_code == 200
        handoff = Handoff.objects.get()
        time.sleep(6)  # past the deadline while no worker runs
        handoff.refresh_from_db()
        assert handoff.status == "pending"
    finally:
        live_stack.start("worker")
    _wait_until_busy(handoff)
    events = list(handoff.conversation.events.filter(kind="handoff.timed_out"))
    assert len(events) == 1


@pytest.mark.timeout(120)
def test_a_worker_killed_while_holding_a_timer_fires_it_on_time_after_restart(
    live_stack: AppProcesses, transactional_db: None
) -> None:
    """The killed worker's timer stays unacked in the broker for the visibility timeout (minutes);
    with beat stopped too, no sweep can cover for it: only the restarted worker re-arming the timer
    expires the handoff within this test's minute."""
    base = live_stack.http_url
    session = _session(base, _demo_bot_with_timeout(8).public_key)
    assert _post(base, session["token"], "/handoff", {"client_id": "h"}).status_code == 200
    handoff = Handoff.objects.get()
    time.sleep(1.5)  # the worker has taken the timer (a worker reserves an ETA task at once)
    live_stack.kill("beat")
    try:
        live_stack.kill("worker")
        live_stack.start("worker")
        _wait_until_busy(handoff)
        assert handoff.timed_out_at is not None and handoff.timed_out_at >= handoff.deadline_at
        assert handoff.conversation.events.filter(kind="handoff.timed_out").count() == 1
    finally:
        live_stack.start("beat")
