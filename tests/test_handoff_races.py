"""Every way a live handoff can change hands, racing on one handoff — on PostgreSQL, with real
threads and real connections: release, transfer, take-over, resolve, the agent's removal from the
workspace, and a colleague's claim. Exactly one outcome wins each contested state, the thread's log
replays to the handoff's final state without a gap, and no handoff ends live with an agent who
cannot act. Plus the two orders of a claim racing the claimant's removal, forced with lock waits."""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection, transaction

from actions.models import OutboxEvent
from chatbots.models import Membership, Workspace
from chatbots.services import membership_add, subscription_set
from conversations.models import Conversation, Event
from handoff.models import Handoff
from handoff.transitions import claim as claim_module
from handoff.transitions import transfer as transfer_module
from handoff.transitions.claim import handoff_claim
from handoff.transitions.release import handoff_release
from handoff.transitions.requeue import stranded_handoffs
from handoff.transitions.resolve import handoff_resolve
from handoff.transitions.takeover import handoff_take_over
from handoff.transitions.transfer import handoff_transfer
from pivra.errors import DomainError
from tests.factories import make_chatbot, make_user, make_workspace
from tests.handoff_helpers import enable_handoff, new_visitor, request
from tests.pg_locks import backend_pid, wait_until, waiting_on_a_lock

pytestmark = pytest.mark.django_db(transaction=True)
TRIALS = 12

# What each thread event does to the handoff: (statuses it may follow, status after).
TRANSITIONS = {
    "handoff.claimed": ({"pending", "busy"}, "active"),
    "handoff.released": ({"active"}, "pending"),
    "handoff.transferred": ({"active"}, "pending"),
    "handoff.taken_over": ({"active"}, "active"),
    "handoff.resolved": ({"pending", "busy", "active"}, "resolved"),
    "handoff.timed_out": ({"pending"}, "busy"),
}


@pytest.fixture(autouse=True)
def _postgresql_only() -> None:
    if connection.vendor != "postgresql":
        pytest.skip("concurrency is tested on PostgreSQL")


def _team() -> tuple[Workspace, Any, User, User, User]:
    workspace = make_workspace("Race shop", plan="business")
    subscription_set(workspace=workspace, plan_code="business")
    owner = Membership.objects.get(workspace=workspace).user
    alice, bob = make_user("alice"), make_user("bob")
    for agent in (alice, bob):
        membership_add(workspace=workspace, user=agent, role=Membership.Role.AGENT)
    return workspace, enable_handoff(make_chatbot(workspace, "Race bot")), owner, alice, bob


def _run(targets: dict[str, Callable[[], Any]]) -> tuple[dict[str, Any], list[BaseException]]:
    """Start every target at once (a barrier); each one's result, or the DomainError it was refused with."""
    barrier = threading.Barrier(len(targets))
    outcome: dict[str, Any] = {}
    errors: list[BaseException] = []

    def run(name: str, target: Callable[[], Any]) -> None:
        try:
            barrier.wait(timeout=30)
            outcome[name] = target()
        except DomainError as exc:
            outcome[name] = exc
        except BaseException as exc:  # reported by the caller: a crash is not a refusal
            errors.append(exc)
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=item, name=item[0]) for item in targets.items()]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    return outcome, errors


def _replay(conversation: Conversation) -> tuple[str, int | None, Counter[str]]:
    """Replay the thread's handoff events from the request; every one must be legal where it stands.
    Returns (status, the holder the log names, how many events of each kind)."""
    log = list(Event.objects.filter(conversation=conversation).order_by("seq"))
    assert [e.seq for e in log] == list(range(1, len(log) + 1)), "the event log has a gap"
    status, holder, kinds = "", None, Counter[str]()
    for event in log:
        if event.kind == "handoff.requested":
            status = "pending"
            continue
        if event.kind not in TRANSITIONS:
            continue
        before, after = TRANSITIONS[event.kind]
        assert status in before, f"{event.kind} after {status}: {[e.kind for e in log]}"
        status = after
        kinds[event.kind] += 1
        if event.kind in ("handoff.claimed", "handoff.taken_over"):
            holder = event.agent_id
        elif after != "active":
            holder = None
    return status, holder, kinds


def test_release_transfer_take_over_resolve_removal_and_claim_race_on_one_handoff(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    workspace, bot, owner, alice, bob = _team()
    # Bob counts as online for the transfer (presence has its own tests).
    monkeypatch.setattr(transfer_module, "online_agent_ids", lambda *, workspace_id: {bob.pk})
    wins: Counter[str] = Counter()
    for trial in range(TRIALS):
        if not Membership.objects.filter(workspace=workspace, user=alice).exists():
            membership_add(workspace=workspace, user=alice, role=Membership.Role.AGENT)
        visitor, conversation = new_visitor(bot)
        request(visitor, conversation)
        conv = str(conversation.public_id)
        handoff_claim(agent=alice, conversation_public_id=conv)

        def remove_alice() -> int:
            with transaction.atomic():  # as the admin's delete view
                return Membership.objects.filter(workspace=workspace, user=alice).delete()[0]

        racers: dict[str, Callable[[], Any]] = {
            "release": lambda: handoff_release(agent=alice, conversation_public_id=conv),  # noqa: B023
            "transfer": lambda: handoff_transfer(agent=alice, conversation_public_id=conv, to_user_id=bob.pk),  # noqa: B023
            "take_over": lambda: handoff_take_over(agent=owner, conversation_public_id=conv),  # noqa: B023
            "resolve": lambda: handoff_resolve(agent=alice, conversation_public_id=conv),  # noqa: B023
            "remove": remove_alice,
            "claim": lambda: handoff_claim(agent=bob, conversation_public_id=conv),  # noqa: B023
        }
        # Each trial leaves a different pair out, so every pairing meets in some trial.
        names = list(racers)
        left_out = {names[trial % len(names)], names[(trial * 5 + 1) % len(names)]} if trial >= len(names) else set()
        outcome, errors = _run({name: fn for name, fn in racers.items() if name not in left_out})
        assert not errors, errors

        handoff = Handoff.objects.get(conversation=conversation)
        status, holder, kinds = _replay(conversation)
        assert status == handoff.status, (outcome, kinds)
        if status == "active":
            assert holder == handoff.claimed_by_id, (outcome, kinds)
        # Exactly one of the transitions guarded on "Alice holds it" took it from her.
        first_change = (
            Event.objects.filter(conversation=conversation, kind__in=list(TRANSITIONS))
            .exclude(kind="handoff.claimed", agent=alice)
            .order_by("seq")
            .first()
        )
        assert first_change is not None, outcome
        wins[first_change.kind + ("/" + first_change.data.get("reason", "") if first_change.data else "")] += 1
        # Every success left exactly its one event; no refusal left any.
        succeeded = {name for name, result in outcome.items() if not isinstance(result, DomainError)}
        assert kinds["handoff.released"] == ("release" in succeeded) + bool(
            Event.objects.filter(conversation=conversation, kind="handoff.released", data__reason="member_removed")
        )
        assert kinds["handoff.transferred"] == ("transfer" in succeeded)
        assert kinds["handoff.taken_over"] == ("take_over" in succeeded)
        assert kinds["handoff.resolved"] == ("resolve" in succeeded)
        assert kinds["handoff.claimed"] == 1 + ("claim" in succeeded and outcome["claim"].claimed_by_id == bob.pk)
        # The outbox tells the same story as the thread.
        outbox = Counter(
            OutboxEvent.objects.filter(payload__data__conversation__id=conv).values_list("type", flat=True)
        )
        assert outbox["handoff.released"] == kinds["handoff.released"]
        assert outbox["handoff.resolved"] == kinds["handoff.resolved"]
        assert outbox["handoff.claimed"] == kinds["handoff.claimed"]
        # Nobody stranded: a live handoff's agent can act.
        assert not stranded_handoffs().exists(), (outcome, kinds)
    assert len(wins) >= 2, wins  # the races really were contested (different winners across trials)


def _hold(monkeypatch: pytest.MonkeyPatch, thread: str, waiter: list[int]) -> threading.Event:
    """Hold the claim in ``thread`` right after its membership check (its transaction open, the
    rows it read share-locked) until the backend in ``waiter`` waits for a lock."""
    holding = threading.Event()
    real = claim_module.agent_can_act_locked

    def held(**kwargs: Any) -> bool:
        result = real(**kwargs)
        if threading.current_thread().name == thread:
            holding.set()
            wait_until(lambda: waiting_on_a_lock(waiter), "the removal waits for the claim's locks")
        return result

    monkeypatch.setattr(claim_module, "agent_can_act_locked", held)
    return holding


def test_a_removal_that_waits_for_a_claim_returns_the_claimed_chat_to_the_queue(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The claim has won its update and checked the membership when the removal starts: the removal
    waits for the claim's commit, then finds the chat live with the removed agent and requeues it.
    (Without the share lock the removal's requeue ran first, found nothing, and the claim committed
    a live chat with an agent who was no longer a member.)"""
    workspace, bot, _owner, alice, _bob = _team()
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    remover_pid: list[int] = []
    claim_holds = _hold(monkeypatch, "claim", remover_pid)

    def remove() -> int:
        remover_pid.append(backend_pid())
        wait_until(claim_holds.is_set, "the claim holds the membership")
        with transaction.atomic():
            return Membership.objects.filter(workspace=workspace, user=alice).delete()[0]

    outcome, errors = _run(
        {
            "claim": lambda: handoff_claim(agent=alice, conversation_public_id=str(conversation.public_id)),
            "remove": remove,
        }
    )
    assert not errors, errors
    assert outcome["claim"].status == "active" and outcome["remove"] >= 1
    handoff = Handoff.objects.get(conversation=conversation)
    assert (handoff.status, handoff.claimed_by_id) == ("pending", None)
    assert _replay(conversation)[0] == "pending"
    last = conversation.events.order_by("-seq").first()
    assert last is not None and last.kind == "handoff.released" and last.data["reason"] == "member_removed"


def test_a_claim_after_the_removal_committed_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The agent's page was open when they were removed: the claim's lookup ran first, the removal
    committed before the claim's update. The claim is refused and the chat stays in the queue."""
    workspace, bot, _owner, alice, _bob = _team()
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    real_lookup = claim_module.agent_handoff

    def lookup_then_removed(**kwargs: Any) -> Handoff:
        found = real_lookup(**kwargs)
        Membership.objects.filter(workspace=workspace, user=alice).delete()  # commits (autocommit)
        return found

    monkeypatch.setattr(claim_module, "agent_handoff", lookup_then_removed)
    with pytest.raises(DomainError) as refused:
        handoff_claim(agent=alice, conversation_public_id=str(conversation.public_id))
    assert refused.value.code == "handoff_not_found"
    handoff = Handoff.objects.get(conversation=conversation)
    assert (handoff.status, handoff.claimed_by_id) == ("pending", None)
    assert not conversation.events.filter(kind="handoff.claimed").exists()


@pytest.mark.parametrize("departure", ["deleted", "moved"])
def test_a_removal_racing_the_acceptance_of_a_transfer_to_the_removed_agent_does_not_deadlock(
    monkeypatch: pytest.MonkeyPatch, departure: str
) -> None:
    """Alice accepts Bob's transfer (her claim holds the handoff row) just as she is removed — her
    membership deleted, or moved to another workspace. The removal ends offers to her, so it needs that
    row; the claim then needs her membership. Unless the removal locks her handoffs before it changes the
    membership, each waits for the other: PostgreSQL aborts one with a deadlock. Instead the removal
    waits, and returns the accepted chat to the queue."""
    workspace, bot, _owner, alice, bob = _team()
    elsewhere = make_workspace("Elsewhere")
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    public_id = str(conversation.public_id)
    handoff_claim(agent=bob, conversation_public_id=public_id)
    monkeypatch.setattr(transfer_module, "online_agent_ids", lambda *, workspace_id: {alice.pk})
    handoff_transfer(agent=bob, conversation_public_id=public_id, to_user_id=alice.pk)
    remover_pid: list[int] = []
    claim_updated = threading.Event()
    real = claim_module.agent_can_act_locked

    def after_update(**kwargs: Any) -> bool:
        # The claim's update holds the handoff row; the membership is not yet share-locked.
        claim_updated.set()
        wait_until(lambda: waiting_on_a_lock(remover_pid), "the removal waits for a lock")
        return real(**kwargs)

    monkeypatch.setattr(claim_module, "agent_can_act_locked", after_update)

    def remove() -> int:
        remover_pid.append(backend_pid())
        wait_until(claim_updated.is_set, "the claim holds the handoff")
        with transaction.atomic():
            if departure == "deleted":
                return Membership.objects.filter(workspace=workspace, user=alice).delete()[0]
            membership = Membership.objects.get(workspace=workspace, user=alice)
            membership.workspace = elsewhere
            membership.save()
            return 1

    outcome, errors = _run(
        {"claim": lambda: handoff_claim(agent=alice, conversation_public_id=public_id), "remove": remove}
    )
    assert not errors, errors
    assert outcome["claim"].status == "active" and outcome["remove"] >= 1
    handoff = Handoff.objects.get(conversation=conversation)
    assert (handoff.status, handoff.claimed_by_id, handoff.offered_to_id) == ("pending", None, None)
    assert _replay(conversation)[0] == "pending"
    assert not stranded_handoffs().exists()
