"""Transfer, release and take-over of a live conversation, and the offer machinery behind a transfer:
only the offered colleague may claim, declining or letting the offer expire puts it back in the queue."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from chatbots.models import Membership
from chatbots.presence import presence_release, presence_touch
from chatbots.services import membership_add
from conversations.models import Conversation
from handoff.models import Handoff
from handoff.state import conversation_state
from handoff.transitions.claim import handoff_claim
from handoff.transitions.offers import handoff_offer_decline, handoff_offers_expire, offer_blocks_claim
from handoff.transitions.release import handoff_release
from handoff.transitions.reply import handoff_reply
from handoff.transitions.resolve import handoff_resolve
from handoff.transitions.takeover import handoff_take_over
from handoff.transitions.timers import handoff_expire
from handoff.transitions.transfer import handoff_transfer, transfer_targets
from pivra.console.revocation import console_user_group
from pivra.errors import Conflict, DomainError, Forbidden, NotFound
from tests.channel_helpers import frames_heard
from tests.factories import Personas, make_user
from tests.handoff_helpers import event_kinds, new_visitor, outbox_events, request

pytestmark = pytest.mark.django_db


@pytest.fixture
def team(personas: Personas) -> Iterator[Personas]:
    """Alice (the owner) and Bob (an agent) with first names, Bob online; Carol an admin."""
    personas.owner.first_name = "Alice"
    personas.owner.save(update_fields=["first_name"])
    personas.teammate.first_name = "Bob"
    personas.teammate.save(update_fields=["first_name"])
    socket = f"test-{uuid.uuid4().hex}"
    presence_touch(workspace_id=personas.workspace.pk, user_id=personas.teammate.pk, socket_id=socket)
    yield personas
    presence_release(workspace_id=personas.workspace.pk, user_id=personas.teammate.pk, socket_id=socket, now=0)


def _admin(personas: Personas, name: str = "Carol") -> User:
    carol = make_user(name.lower())
    carol.first_name = name
    carol.save(update_fields=["first_name"])
    membership_add(workspace=personas.workspace, user=carol, role=Membership.Role.ADMIN)
    return carol


def _live(bot, agent: User) -> tuple[Conversation, str]:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    key = str(conversation.public_id)
    handoff_claim(agent=agent, conversation_public_id=key)
    return conversation, key


def test_a_transfer_offers_the_chat_to_the_colleague_and_only_they_can_accept(bot, team) -> None:
    alice, bob = team.owner, team.teammate
    conversation, key = _live(bot, alice)
    carol = _admin(team)

    handoff = handoff_transfer(agent=alice, conversation_public_id=key, to_user_id=bob.pk)

    assert handoff.status == "pending" and handoff.claimed_by is None
    assert (handoff.offered_to, handoff.offered_by, handoff.offer_kind) == (bob, alice, "transfer")
    assert handoff.offer_expires_at is not None and handoff.deadline_at > handoff.offer_expires_at
    line = conversation.events.order_by("seq").last()
    assert line is not None and line.kind == "handoff.transferred"
    assert line.text == "Alice transferred the conversation to Bob."
    assert conversation_state(conversation)["handoff"]["transfer_to"] == "Bob"
    [event] = outbox_events("handoff.transferred")
    assert event.payload["data"]["take_over"] is False
    assert event.payload["data"]["from_agent"] == {"id": alice.pk, "name": "Alice"}
    assert event.payload["data"]["to_agent"] == {"id": bob.pk, "name": "Bob"}
    assert event.payload["data"]["handoff"]["status"] == "pending"
    # Nobody else may claim while the offer runs — not even the one who transferred it.
    for other in (alice, carol):
        with pytest.raises(DomainError) as refused:
            handoff_claim(agent=other, conversation_public_id=key)
        assert (refused.value.code, refused.value.status) == ("offered_to_other", 409) and "Bob" in refused.value.detail
    # Bob accepts: accepting is claiming, and the offer is over.
    accepted = handoff_claim(agent=bob, conversation_public_id=key)
    assert accepted.status == "active" and accepted.claimed_by == bob
    accepted.refresh_from_db()
    assert accepted.offered_to is None and accepted.offer_kind == "" and accepted.offer_expires_at is None
    state = conversation_state(conversation)["handoff"]
    assert state["agent"] == "Bob" and state["transfer_to"] is None
    assert event_kinds(conversation)[-2:] == ["handoff.transferred", "handoff.claimed"]
    handoff_reply(agent=bob, conversation_public_id=key, text="Bob here", client_id="b1")
    with pytest.raises(Forbidden):
        handoff_reply(agent=alice, conversation_public_id=key, text="Still me?", client_id="a1")


def test_the_colleague_is_told_live(bot, team, django_capture_on_commit_callbacks) -> None:
    _, key = _live(bot, team.owner)

    def transfer() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            handoff_transfer(agent=team.owner, conversation_public_id=key, to_user_id=team.teammate.pk)

    frames = frames_heard(console_user_group(team.teammate.pk), transfer)
    [offer] = [f for f in frames if f["type"] == "offer"]
    assert offer["conversation"] == key and offer["kind"] == "transfer" and offer["by"] == "Alice"


def test_transfer_guards(bot, team) -> None:
    alice, bob = team.owner, team.teammate
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    key = str(conversation.public_id)
    with pytest.raises(DomainError) as refused:  # nobody holds it yet
        handoff_transfer(agent=alice, conversation_public_id=key, to_user_id=bob.pk)
    assert (refused.value.code, refused.value.status) == ("not_claimed", 409)
    handoff_claim(agent=alice, conversation_public_id=key)
    with pytest.raises(DomainError) as refused:  # only the assignee
        handoff_transfer(agent=bob, conversation_public_id=key, to_user_id=alice.pk)
    assert (refused.value.code, refused.value.status) == ("not_assignee", 403)
    with pytest.raises(DomainError) as refused:  # not to oneself
        handoff_transfer(agent=alice, conversation_public_id=key, to_user_id=alice.pk)
    assert (refused.value.code, refused.value.status) == ("transfer_to_self", 400)
    with pytest.raises(DomainError) as refused:  # a member of another workspace is not named
        handoff_transfer(agent=alice, conversation_public_id=key, to_user_id=team.outsider.pk)
    assert (refused.value.code, refused.value.status) == ("agent_not_found", 404)
    with pytest.raises(NotFound):  # nor a user id that does not exist
        handoff_transfer(agent=alice, conversation_public_id=key, to_user_id=2_000_000_000)
    with pytest.raises(NotFound):  # an outsider cannot reach the conversation at all
        handoff_transfer(agent=team.outsider, conversation_public_id=key, to_user_id=alice.pk)
    offline = _admin(team, "Dave")
    with pytest.raises(DomainError) as refused:  # a member who is not online
        handoff_transfer(agent=alice, conversation_public_id=key, to_user_id=offline.pk)
    assert (refused.value.code, refused.value.status) == ("agent_offline", 409) and "Dave" in refused.value.detail
    assert Handoff.objects.get(conversation=conversation).claimed_by == alice  # nothing changed
    handoff_transfer(agent=alice, conversation_public_id=key, to_user_id=bob.pk)
    with pytest.raises(DomainError) as refused:  # a second transfer of the same chat
        handoff_transfer(agent=alice, conversation_public_id=key, to_user_id=bob.pk)
    assert (refused.value.code, refused.value.status) == ("transfer_pending", 409) and "Bob" in refused.value.detail
    assert len(outbox_events("handoff.transferred")) == 1


def test_a_declined_transfer_goes_back_to_everyone_at_once(bot, team) -> None:
    alice, bob = team.owner, team.teammate
    conversation, key = _live(bot, alice)
    handoff_transfer(agent=alice, conversation_public_id=key, to_user_id=bob.pk)
    with pytest.raises(DomainError) as refused:  # only the offered agent declines
        handoff_offer_decline(agent=alice, conversation_public_id=key)
    assert (refused.value.code, refused.value.status) == ("no_offer", 409)

    handoff = handoff_offer_decline(agent=bob, conversation_public_id=key)

    assert handoff.status == "pending" and handoff.offered_to is None
    line = conversation.events.order_by("seq").last()
    assert line is not None and line.kind == "handoff.transfer_ended"
    assert line.text == "Bob didn't accept; the conversation is back in the queue."
    [released] = outbox_events("handoff.released")
    assert released.payload["data"]["reason"] == "transfer_declined"
    assert conversation_state(conversation)["handoff"]["transfer_to"] is None
    assert handoff_claim(agent=alice, conversation_public_id=key).claimed_by == alice  # first claim wins again
    with pytest.raises(Conflict):  # declining twice
        handoff_offer_decline(agent=bob, conversation_public_id=key)


def test_an_unanswered_transfer_expires_back_to_the_queue(bot, team) -> None:
    alice, bob = team.owner, team.teammate
    conversation, key = _live(bot, alice)
    carol = _admin(team)
    handoff = handoff_transfer(agent=alice, conversation_public_id=key, to_user_id=bob.pk)
    assert handoff.offer_expires_at is not None
    early = handoff.offer_expires_at - timedelta(seconds=1)
    assert handoff_offers_expire(now=early) == 0
    assert offer_blocks_claim(handoff=handoff, agent=carol, now=early)
    assert not offer_blocks_claim(handoff=handoff, agent=bob, now=early)

    later = handoff.offer_expires_at + timedelta(seconds=1)
    assert handoff_offers_expire(now=later) == 1
    assert handoff_offers_expire(now=later) == 0  # once

    handoff.refresh_from_db()
    assert handoff.status == "pending" and handoff.offered_to is None
    assert handoff.deadline_at > later  # a fresh response timeout, not Team busy at once
    assert event_kinds(conversation)[-1] == "handoff.transfer_ended"
    assert outbox_events("handoff.released")[0].payload["data"]["reason"] == "transfer_expired"
    # Accepting after the expiry is an ordinary claim: whoever comes first.
    assert handoff_claim(agent=carol, conversation_public_id=key).claimed_by == carol
    with pytest.raises(DomainError) as refused:
        handoff_claim(agent=bob, conversation_public_id=key)
    assert (refused.value.code, refused.value.status) == ("already_claimed", 409)


def test_an_expired_offer_not_yet_swept_does_not_block_a_claim(bot, team) -> None:
    alice, bob = team.owner, team.teammate
    _, key = _live(bot, alice)
    handoff = handoff_transfer(agent=alice, conversation_public_id=key, to_user_id=bob.pk)
    assert handoff.offer_expires_at is not None
    claimed = handoff_claim(
        agent=alice, conversation_public_id=key, now=handoff.offer_expires_at + timedelta(seconds=1)
    )
    assert claimed.claimed_by == alice
    assert handoff_offers_expire(now=timezone.now() + timedelta(hours=1)) == 0  # the claim ended the offer


def test_release_puts_the_chat_back_in_the_queue(bot, team) -> None:
    alice, bob = team.owner, team.teammate
    conversation, key = _live(bot, alice)
    with pytest.raises(DomainError) as refused:
        handoff_release(agent=bob, conversation_public_id=key)
    assert (refused.value.code, refused.value.status) == ("not_assignee", 403)

    handoff = handoff_release(agent=alice, conversation_public_id=key)

    assert handoff.status == "pending" and handoff.claimed_by is None
    assert event_kinds(conversation)[-1] == "handoff.released"
    [released] = outbox_events("handoff.released")
    assert released.payload["data"]["reason"] == "released"
    assert conversation_state(conversation)["handoff"]["status"] == "pending"
    with pytest.raises(DomainError) as refused:  # released twice
        handoff_release(agent=alice, conversation_public_id=key)
    assert (refused.value.code, refused.value.status) == ("not_claimed", 409)
    assert handoff_claim(agent=bob, conversation_public_id=key).claimed_by == bob
    handoff_resolve(agent=bob, conversation_public_id=key)
    with pytest.raises(DomainError) as refused:
        handoff_release(agent=bob, conversation_public_id=key)
    assert (refused.value.code, refused.value.status) == ("handoff_resolved", 409)


def test_an_owner_or_admin_takes_over_and_the_previous_holder_is_told(
    bot, team, django_capture_on_commit_callbacks
) -> None:
    alice, bob = team.owner, team.teammate
    conversation, key = _live(bot, bob)
    carol = _admin(team)
    with pytest.raises(DomainError) as refused:  # an agent cannot
        handoff_take_over(agent=bob, conversation_public_id=key)
    assert (refused.value.code, refused.value.status) == ("not_admin", 403)
    assert handoff_take_over(agent=alice, conversation_public_id=key).claimed_by == alice  # the owner, from Bob
    with pytest.raises(DomainError) as refused:
        handoff_take_over(agent=alice, conversation_public_id=key)
    assert (refused.value.code, refused.value.status) == ("already_yours", 409)

    def take_over() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            handoff_take_over(agent=carol, conversation_public_id=key)

    frames = frames_heard(console_user_group(alice.pk), take_over)
    [told] = [f for f in frames if f["type"] == "taken_over"]
    assert told["conversation"] == key and told["by"] == "Carol"
    handoff = Handoff.objects.get(conversation=conversation)
    assert handoff.claimed_by == carol and handoff.status == "active"
    assert conversation.events.order_by("seq").last().text == "Carol took over the conversation."  # type: ignore[union-attr]
    assert conversation_state(conversation)["handoff"]["agent"] == "Carol"
    events = outbox_events("handoff.transferred")
    assert [e.payload["data"]["take_over"] for e in events] == [True, True]
    assert events[-1].payload["data"]["from_agent"] == {"id": alice.pk, "name": "Alice"}
    with pytest.raises(Forbidden):
        handoff_reply(agent=alice, conversation_public_id=key, text="mine?", client_id="x")


def test_take_over_of_a_chat_nobody_holds_is_refused_and_a_stranded_one_is_healed(bot, team) -> None:
    alice = team.owner
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    key = str(conversation.public_id)
    with pytest.raises(DomainError) as refused:
        handoff_take_over(agent=alice, conversation_public_id=key)
    assert (refused.value.code, refused.value.status) == ("not_live", 409)
    gone = make_user("gone")
    membership_add(workspace=team.workspace, user=gone, role=Membership.Role.AGENT)
    handoff_claim(agent=gone, conversation_public_id=key)
    Handoff.objects.filter(conversation=conversation).update(claimed_by=None)  # the agent's row vanished
    assert handoff_take_over(agent=alice, conversation_public_id=key).claimed_by == alice


def test_colleagues_are_the_online_members_but_me(bot, team) -> None:
    _, key = _live(bot, team.owner)
    assert transfer_targets(agent=team.owner, conversation_public_id=key) == [{"id": team.teammate.pk, "name": "Bob"}]
    assert transfer_targets(agent=team.teammate, conversation_public_id=key) == []
    with pytest.raises(NotFound):
        transfer_targets(agent=team.outsider, conversation_public_id=key)


def test_the_beat_schedule_runs_the_offer_sweep(settings) -> None:
    from pivra.celery import app

    entry = app.conf.beat_schedule["offer-sweep"]
    assert entry["task"] == "handoff.tasks.sweep_expired_offers"
    assert entry["schedule"] == settings.HANDOFF_SWEEP_SECONDS
    assert "handoff.tasks.sweep_expired_offers" in app.tasks


def test_the_sweep_task_ends_due_offers(bot, team) -> None:
    from handoff.tasks import sweep_expired_offers

    _, key = _live(bot, team.owner)
    handoff = handoff_transfer(agent=team.owner, conversation_public_id=key, to_user_id=team.teammate.pk)
    Handoff.objects.filter(pk=handoff.pk).update(offer_expires_at=timezone.now() - timedelta(seconds=1))
    assert sweep_expired_offers() == 1
    assert Handoff.objects.get(pk=handoff.pk).offered_to is None


def test_a_colleague_at_their_limit_of_live_chats_is_not_offered_a_transfer(bot, team) -> None:
    alice, bob = team.owner, team.teammate
    _live(bot, bob)  # Bob already has one live chat…
    Membership.objects.filter(user=bob, workspace=team.workspace).update(max_live_chats=1)  # …his limit
    conversation, key = _live(bot, alice)
    assert transfer_targets(agent=alice, conversation_public_id=key) == []
    with pytest.raises(DomainError) as refused:
        handoff_transfer(agent=alice, conversation_public_id=key, to_user_id=bob.pk)
    assert (refused.value.code, refused.value.status) == ("over_capacity", 409) and "Bob" in refused.value.detail
    handoff = Handoff.objects.get(conversation=conversation)
    assert (handoff.status, handoff.claimed_by, handoff.offered_to) == ("active", alice, None)
    assert outbox_events("handoff.transferred") == []

    Membership.objects.filter(user=bob, workspace=team.workspace).update(max_live_chats=2)
    assert transfer_targets(agent=alice, conversation_public_id=key) == [{"id": bob.pk, "name": "Bob"}]
    assert handoff_transfer(agent=alice, conversation_public_id=key, to_user_id=bob.pk).offered_to == bob


def test_accepting_a_transfer_of_a_chat_that_once_timed_out_is_not_a_late_claim(bot, team) -> None:
    alice, bob = team.owner, team.teammate
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    assert handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)
    key = str(conversation.public_id)
    handoff_claim(agent=alice, conversation_public_id=key)  # late
    transferred = handoff_transfer(agent=alice, conversation_public_id=key, to_user_id=bob.pk)
    assert transferred.timed_out_at is None and transferred.busy_reason == ""
    handoff_claim(agent=bob, conversation_public_id=key)  # accepting
    claims = list(conversation.events.filter(kind="handoff.claimed").order_by("seq").values_list("data", flat=True))
    assert claims == [{"late": True}, {"late": False}]


def test_a_take_over_by_an_admin_demoted_meanwhile_is_refused(bot, team, monkeypatch) -> None:
    """The role read before the transaction said admin; the demotion committed before the take-over's
    update. The role is read again under the membership's lock, so nothing changes hands."""
    from handoff.transitions import takeover as takeover_module

    bob = team.teammate
    conversation, key = _live(bot, bob)
    carol = _admin(team)
    real = takeover_module._is_manager

    def read_then_demoted(**kwargs) -> bool:
        was = real(**kwargs)
        Membership.objects.filter(user=carol, workspace=team.workspace).update(role=Membership.Role.AGENT)
        return was

    monkeypatch.setattr(takeover_module, "_is_manager", read_then_demoted)
    with pytest.raises(DomainError) as refused:
        handoff_take_over(agent=carol, conversation_public_id=key)
    assert (refused.value.code, refused.value.status) == ("not_admin", 403)
    handoff = Handoff.objects.get(conversation=conversation)
    assert (handoff.status, handoff.claimed_by) == ("active", bob)
    assert "handoff.taken_over" not in event_kinds(conversation)
    assert outbox_events("handoff.transferred") == []
