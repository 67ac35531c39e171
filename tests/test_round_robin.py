"""Round robin: a new handoff is offered to the online agent with the fewest live chats under capacity,
then to the next when the offer expires, then to everyone (first claim wins). Off by default."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from chatbots.models import Chatbot, Membership
from chatbots.presence import presence_touch
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from handoff.transitions.offers import handoff_offers_expire
from handoff.transitions.resolve import handoff_resolve
from handoff.transitions.routing import handoff_route, routing_next_agent
from handoff.transitions.timers import handoff_expire
from pivra.console.revocation import console_user_group
from pivra.errors import Conflict
from tests.channel_helpers import frames_heard
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request

pytestmark = pytest.mark.django_db


@pytest.fixture
def bot(personas: Personas) -> Chatbot:
    bot = enable_handoff(personas.chatbot)
    Chatbot.objects.filter(pk=bot.pk).update(
        handoff_routing=Chatbot.Routing.ROUND_ROBIN, handoff_skip_wait_when_offline=False
    )
    bot.refresh_from_db()
    return bot


def _online(bot: Chatbot, *users: User) -> None:
    for user in users:
        presence_touch(workspace_id=bot.workspace_id, user_id=user.pk, socket_id=f"test-{user.pk}")


def _waiting(bot: Chatbot) -> tuple[str, Handoff]:
    visitor, conversation = new_visitor(bot)
    return str(conversation.public_id), request(visitor, conversation)


def _live_chats(bot: Chatbot, agent: User, count: int) -> None:
    for _ in range(count):
        conv, _ = _waiting(bot)
        handoff_claim(agent=agent, conversation_public_id=conv)


def _routed(handoff: Handoff) -> Handoff:
    handoff_route(handoff=handoff, now=timezone.now())
    return Handoff.objects.get(pk=handoff.pk)


def test_the_agent_with_the_fewest_live_chats_gets_the_offer(bot, personas) -> None:
    _online(bot, personas.owner, personas.teammate)
    _live_chats(bot, personas.owner, 1)
    _, handoff = _waiting(bot)
    routed = _routed(handoff)
    assert routed.offered_to_id == personas.teammate.pk and routed.offer_kind == "route"
    assert routed.routing_tried == [personas.teammate.pk]
    assert routed.offer_expires_at is not None
    assert 25 <= (routed.offer_expires_at - timezone.now()).total_seconds() <= 30  # PIVRA_ROUTING_OFFER_SECONDS


def test_an_agent_at_capacity_or_offline_is_skipped(bot, personas) -> None:
    _online(bot, personas.owner, personas.teammate)
    _live_chats(bot, personas.owner, 2)
    _live_chats(bot, personas.teammate, 1)
    Membership.objects.filter(user=personas.teammate, workspace=personas.workspace).update(max_live_chats=1)
    assert _routed(_waiting(bot)[1]).offered_to_id == personas.owner.pk  # more chats, but room for one more
    # An open offer counts as a chat: at capacity 3 the owner takes no second offer meanwhile.
    Membership.objects.filter(user=personas.owner, workspace=personas.workspace).update(max_live_chats=3)
    assert _routed(_waiting(bot)[1]).offered_to_id is None
    # Nobody online: nobody is offered anything (everyone in the workspace may claim).
    assert routing_next_agent(workspace_id=personas.other_workspace.pk, exclude=set(), now=timezone.now()) is None


def test_an_unaccepted_offer_goes_to_the_next_agent_then_to_everyone(bot, personas) -> None:
    _online(bot, personas.owner, personas.teammate)
    conv, handoff = _waiting(bot)
    first = _routed(handoff).offered_to_id
    assert first is not None
    other = personas.teammate if first == personas.owner.pk else personas.owner
    # While the offer runs only the offered agent may claim.
    with pytest.raises(Conflict):
        handoff_claim(agent=other, conversation_public_id=conv)
    later = timezone.now() + timedelta(seconds=31)
    assert handoff_offers_expire(now=later) == 1
    handoff = Handoff.objects.get(pk=handoff.pk)
    assert handoff.offered_to_id == other.pk and handoff.routing_tried == [first, other.pk]
    assert handoff_offers_expire(now=later + timedelta(seconds=31)) == 1
    handoff = Handoff.objects.get(pk=handoff.pk)
    assert handoff.status == "pending" and handoff.offered_to_id is None and handoff.offer_kind == ""
    # Everyone's now: first claim wins, whoever it is.
    assert handoff_claim(agent=User.objects.get(pk=first), conversation_public_id=conv).status == "active"


def test_ties_go_to_whoever_was_offered_or_claimed_least_recently(bot, personas) -> None:
    _online(bot, personas.owner, personas.teammate)
    conv, handoff = _waiting(bot)
    first = _routed(handoff).offered_to_id
    assert first is not None
    agent = User.objects.get(pk=first)
    handoff_claim(agent=agent, conversation_public_id=conv)
    handoff_resolve(agent=agent, conversation_public_id=conv)  # both have no live chat again
    second = _routed(_waiting(bot)[1]).offered_to_id
    assert second is not None and second != first


def test_two_visitors_arriving_together_go_to_two_agents(bot, personas) -> None:
    _online(bot, personas.owner, personas.teammate)
    a = _routed(_waiting(bot)[1]).offered_to_id
    b = _routed(_waiting(bot)[1]).offered_to_id
    assert {a, b} == {personas.owner.pk, personas.teammate.pk}


def test_the_request_path_routes_after_commit_and_first_claim_is_the_default(
    bot, personas, django_capture_on_commit_callbacks
) -> None:
    _online(bot, personas.teammate)
    with django_capture_on_commit_callbacks(execute=True):
        _, handoff = _waiting(bot)
    handoff.refresh_from_db()
    assert handoff.offered_to_id == personas.teammate.pk and handoff.offer_kind == "route"

    Chatbot.objects.filter(pk=bot.pk).update(handoff_routing=Chatbot.Routing.FIRST_CLAIM)
    bot.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        _, handoff = _waiting(bot)
    handoff.refresh_from_db()
    assert handoff.offered_to_id is None and handoff.routing_tried == []


def test_a_handoff_that_times_out_during_an_offer_ends_the_offer(
    bot, personas, django_capture_on_commit_callbacks
) -> None:
    """An offer to the next agent made just before the response timeout: Team busy ends it, and the
    agent's console drops the notice (the frame an offer's end sends)."""
    _online(bot, personas.teammate)
    conv, handoff = _waiting(bot)
    routed = _routed(handoff)
    assert routed.offered_to_id == personas.teammate.pk
    Handoff.objects.filter(pk=handoff.pk).update(offer_expires_at=routed.deadline_at + timedelta(seconds=20))

    def expire() -> None:
        with django_capture_on_commit_callbacks(execute=True):
            assert handoff_expire(handoff_id=handoff.pk, now=routed.deadline_at)

    frames = frames_heard(console_user_group(personas.teammate.pk), expire)
    assert [f for f in frames if f["type"] == "offer.ended"] == [
        {"type": "offer.ended", "conversation": conv, "reason": "timed_out"}
    ]
    busy = Handoff.objects.get(pk=handoff.pk)
    assert busy.status == "busy"
    assert (busy.offered_to_id, busy.offered_by_id, busy.offer_kind, busy.offer_expires_at) == (None, None, "", None)
    # Nobody is held back: the sweep has no offer left to end, and anyone may claim late.
    assert handoff_offers_expire(now=routed.deadline_at + timedelta(minutes=5)) == 0
    assert handoff_claim(agent=personas.owner, conversation_public_id=conv).claimed_by == personas.owner
