"""The team's labels for the thread's system lines, drawn by the page and (in step) by conversation.js."""

from __future__ import annotations

from pathlib import Path

import pytest

from conversations.models import Event
from pivra.console.thread_labels import RELEASE_REASONS, SYSTEM_LABELS, system_label

JS = (Path(__file__).resolve().parents[1] / "static" / "console" / "conversation.js").read_text()


@pytest.mark.parametrize(
    ("kind", "data", "label"),
    [
        ("handoff.released", {"reason": "member_removed"}, "Back in the queue · agent removed from the workspace"),
        ("handoff.released", {"reason": "released"}, "Back in the queue · released by the agent"),
        ("handoff.released", {}, "Back in the queue"),
        ("handoff.timed_out", {"reason": "offline"}, "Team busy · nobody online"),
        ("handoff.timed_out", {"reason": "after_hours"}, "Team busy · after hours"),
        ("handoff.timed_out", {"reason": "timeout"}, "Timed out · team busy"),
        ("handoff.claimed", {"late": True}, "Claimed late"),
    ],
)
def test_system_lines_say_what_happened_and_why(kind: str, data: dict[str, object], label: str) -> None:
    assert system_label(Event(kind=kind, author=Event.Author.SYSTEM, data=data)) == label


def test_the_live_thread_uses_the_same_labels_as_the_page() -> None:
    # The same msgid on both sides: the same words in every language (the JS catalogue holds them too).
    for kind, label in SYSTEM_LABELS.items():
        assert f'"{kind}": gettext("{label}")' in JS, kind
    for reason, text in RELEASE_REASONS.items():
        assert f'{reason}: gettext("{text}")' in JS, reason
