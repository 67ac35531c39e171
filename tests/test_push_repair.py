"""A process killed between committing an event and publishing it must not leave an open widget
waiting forever: the push-repair sweep republishes committed events that have no push receipt."""

from __future__ import annotations

import ast
from datetime import timedelta
from pathlib import Path

import pytest
from django.utils import timezone

from handoff import transitions
from handoff.models import Handoff
from handoff.pushes import CONSOLE_KINDS, STATE_KINDS, conversation_pushes_repair
from handoff.transitions.claim import handoff_claim
from handoff.transitions.requeue import handoff_requeue
from handoff.transitions.timers import handoff_expire
from pivra.realtime import console_group, push_receipts, visitor_group
from tests.channel_helpers import frames_heard
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request


@pytest.fixture
def bot(personas: Personas):
    return enable_handoff(personas.chatbot, timeout=30)


def test_an_expiry_committed_by_a_worker_that_died_before_publishing_reaches_the_widget(
    bot, django_capture_on_commit_callbacks
) -> None:
    visitor, conversation = new_visitor(bot)
    with django_capture_on_commit_callbacks(execute=True):
        handoff = request(visitor, conversation)
    conversation.refresh_from_db()
    pushed_before = conversation.last_seq
    assert push_receipts([conversation.pk]) == {conversation.pk: pushed_before}

    # The worker commits the expiry and dies before its after-commit hooks run.
    with django_capture_on_commit_callbacks(execute=False) as lost:
        assert handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at + timedelta(seconds=1))
    assert lost, "the expiry registers its broadcasts after commit"
    conversation.refresh_from_db()
    assert push_receipts([conversation.pk]) == {conversation.pk: pushed_before}

    later = timezone.now() + timedelta(seconds=5)

    def sweep() -> None:
        with django_capture_on_commit_callbacks(execute=True):  # the sweep runs in autocommit mode
            conversation_pushes_repair(now=later)

    frames = frames_heard(visitor_group(visitor.public_id), sweep)
    events = [f for f in frames if f["type"] == "event"]
    states = [f for f in frames if f["type"] == "state"]
    assert [e["seq"] for e in events] == list(range(pushed_before + 1, conversation.last_seq + 1))
    assert events[-1]["kind"] == "handoff.timed_out"
    assert states and states[-1]["state"]["handoff"]["status"] == Handoff.Status.BUSY
    assert states[-1]["state"]["last_seq"] == conversation.last_seq
    assert push_receipts([conversation.pk]) == {conversation.pk: conversation.last_seq}

    # Repaired once: the next sweep has nothing to do.
    assert frames_heard(visitor_group(visitor.public_id), sweep) == []


def test_events_published_normally_are_not_published_again(bot, django_capture_on_commit_callbacks) -> None:
    visitor, conversation = new_visitor(bot)
    with django_capture_on_commit_callbacks(execute=True):
        request(visitor, conversation)
    later = timezone.now() + timedelta(seconds=5)
    assert conversation_pushes_repair(now=later) == 0
    assert frames_heard(visitor_group(visitor.public_id), lambda: conversation_pushes_repair(now=later)) == []


def test_a_fresh_event_gets_time_for_its_own_publish_before_the_sweep_steps_in(
    bot, django_capture_on_commit_callbacks
) -> None:
    visitor, conversation = new_visitor(bot)
    with django_capture_on_commit_callbacks(execute=False):
        request(visitor, conversation)  # committed, not yet published
    assert conversation_pushes_repair(now=timezone.now()) == 0
    assert conversation_pushes_repair(now=timezone.now() + timedelta(seconds=5)) == 1


def test_a_state_lost_after_its_event_went_out_is_announced_by_the_sweep(
    bot, django_capture_on_commit_callbacks
) -> None:
    visitor, conversation = new_visitor(bot)
    with django_capture_on_commit_callbacks(execute=True):
        handoff = request(visitor, conversation)

    # The worker commits the expiry, publishes its event, and dies before publishing the new state.
    with django_capture_on_commit_callbacks(execute=False) as hooks:
        assert handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at + timedelta(seconds=1))
    event_pushes = [hook for hook in hooks if hook.__qualname__.startswith("_send_with_receipt_on_commit")][:1]
    heard = frames_heard(visitor_group(visitor.public_id), lambda: [push() for push in event_pushes])
    conversation.refresh_from_db()
    assert [f["kind"] for f in heard] == ["handoff.timed_out"]  # the event went out, the state did not
    assert push_receipts([conversation.pk]) == {conversation.pk: conversation.last_seq}
    assert push_receipts([conversation.pk], state=True)[conversation.pk] < conversation.last_seq

    later = timezone.now() + timedelta(seconds=5)

    def sweep() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            assert conversation_pushes_repair(now=later) == 1

    frames = frames_heard(visitor_group(visitor.public_id), sweep)
    assert [f["type"] for f in frames] == ["state"]  # the event is not sent twice
    assert frames[0]["state"]["handoff"]["status"] == Handoff.Status.BUSY
    assert push_receipts([conversation.pk], state=True) == {conversation.pk: conversation.last_seq}
    assert conversation_pushes_repair(now=later) == 0


# --- the kinds the sweep republishes to the console and repairs the state after -------------------------


def _call_name(call: ast.Call) -> str:
    func = call.func
    return func.id if isinstance(func, ast.Name) else func.attr if isinstance(func, ast.Attribute) else ""


def _reached(name: str, calls: dict[str, list[ast.Call]], seen: set[str]) -> set[str]:
    """The module's functions ``name`` runs: itself and what it calls, transitively."""
    if name not in seen:
        seen.add(name)
        for call in calls[name]:
            if _call_name(call) in calls:
                _reached(_call_name(call), calls, seen)
    return seen


def _transition_kinds() -> tuple[set[str], set[str]]:
    """Read from handoff/transitions' code: (the kinds appended with ``notify_console=True``, those of
    them appended by a transition that then announces the conversation's state — itself or through a
    helper of its module)."""
    console: set[str] = set()
    state: set[str] = set()
    for path in sorted(Path(transitions.__file__).parent.glob("*.py")):
        tree = ast.parse(path.read_text())
        functions = {node.name: node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        calls = {name: [n for n in ast.walk(node) if isinstance(n, ast.Call)] for name, node in functions.items()}
        appended: dict[str, set[str]] = {}
        for name, found in calls.items():
            for call in found:
                if _call_name(call) != "event_append":
                    continue
                keywords = {keyword.arg: keyword.value for keyword in call.keywords}
                notify = keywords.get("notify_console")
                assert notify is None or isinstance(notify, ast.Constant), f"{path.name}:{name}: a computed notify"
                if notify is None or notify.value is not True:
                    continue
                kind = keywords["kind"]
                assert isinstance(kind, ast.Constant) and isinstance(kind.value, str), (
                    f"{path.name}:{name}: a computed kind"
                )
                appended.setdefault(name, set()).add(kind.value)
        console |= {kind for kinds in appended.values() for kind in kinds}
        for name in functions:
            scope = _reached(name, calls, set())
            if any(_call_name(call) == "announce_state" for f in scope for call in calls[f]):
                state |= {kind for f in scope for kind in appended.get(f, set())}
    return console, state


def test_every_kind_a_transition_tells_the_console_is_in_the_sweeps_lists() -> None:
    """A kind missing here would be republished to the widget only, or its lost state never announced."""
    console, state = _transition_kinds()
    assert {"handoff.claimed", "handoff.released", "handoff.transfer_ended"} <= state  # the scan sees them
    assert "conversation.continued" in console - state  # a switch frame follows, not a state
    assert console == CONSOLE_KINDS
    assert state == STATE_KINDS


def test_a_republished_release_gives_the_widget_no_internal_data(
    bot, personas, django_capture_on_commit_callbacks
) -> None:
    visitor, conversation = new_visitor(bot)
    with django_capture_on_commit_callbacks(execute=True):
        handoff = request(visitor, conversation)
        handoff_claim(agent=personas.teammate, conversation_public_id=str(conversation.public_id))
    with django_capture_on_commit_callbacks(execute=False):  # committed; the process died before publishing
        assert handoff_requeue(handoff_id=handoff.pk, reason="member_removed", actor=personas.owner)
    later = timezone.now() + timedelta(seconds=5)
    widget: list[dict] = []

    def sweep() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            assert conversation_pushes_repair(now=later) == 1

    console = frames_heard(
        console_group(bot.workspace_id), lambda: widget.extend(frames_heard(visitor_group(visitor.public_id), sweep))
    )
    [to_widget] = [f for f in widget if f.get("kind") == "handoff.released"]
    [to_console] = [f for f in console if f.get("kind") == "handoff.released"]
    assert to_widget["data"] == {}
    assert to_console["data"] == {"reason": "member_removed", "by": personas.owner.pk}
