"""Back to the queue: the requeue transition, and every way an agent leaves a workspace (removed,
moved, deactivated, deleted) returning their live conversations to the queue at once."""

from __future__ import annotations

from datetime import timedelta

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from chatbots.models import Membership
from handoff.models import Handoff
from handoff.state import conversation_state
from handoff.transitions.claim import handoff_claim
from handoff.transitions.requeue import handoff_requeue
from handoff.transitions.timers import handoff_expire
from tests.handoff_helpers import event_kinds, new_visitor, outbox_events, request

pytestmark = pytest.mark.django_db


def _live(bot, agent: User):
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    handoff = handoff_claim(agent=agent, conversation_public_id=str(conversation.public_id))
    return visitor, conversation, handoff


def test_requeue_returns_a_live_handoff_to_the_queue(bot, personas) -> None:
    personas.teammate.first_name = "Alice"
    personas.teammate.save()
    _visitor, conversation, handoff = _live(bot, personas.teammate)
    now = timezone.now() + timedelta(minutes=5)
    assert handoff_requeue(handoff_id=handoff.pk, reason="released", actor=personas.teammate, now=now)
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.PENDING
    assert handoff.claimed_by is None and handoff.claimed_at is None and handoff.last_message_at is None
    assert handoff.deadline_at == now + timedelta(seconds=bot.handoff_timeout_seconds)
    assert event_kinds(conversation)[-1] == "handoff.released"
    event = conversation.events.order_by("-seq").first()
    assert event is not None
    assert event.text == "Alice left the conversation. Waiting for a team member…"
    assert event.data == {"reason": "released", "by": personas.teammate.pk}
    [released] = outbox_events("handoff.released")
    assert released.payload["data"]["reason"] == "released"
    assert released.payload["data"]["previous_agent"] == {"id": personas.teammate.pk, "name": "Alice"}
    assert released.payload["data"]["handoff"]["status"] == "pending"
    conversation.refresh_from_db()
    assert conversation_state(conversation)["handoff"]["status"] == "pending"
    assert conversation_state(conversation)["handoff"]["agent"] is None
    # Anyone may claim it again; a second requeue is refused by the guard.
    assert not handoff_requeue(handoff_id=handoff.pk, reason="released", actor=None)
    again = handoff_claim(agent=personas.owner, conversation_public_id=str(conversation.public_id))
    assert again.claimed_by == personas.owner


def test_requeue_guard_on_the_claiming_agent(bot, personas) -> None:
    _visitor, _conversation, handoff = _live(bot, personas.owner)
    assert not handoff_requeue(handoff_id=handoff.pk, reason="released", actor=None, claimed_by_id=personas.teammate.pk)
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.ACTIVE
    assert handoff_requeue(handoff_id=handoff.pk, reason="released", actor=None, claimed_by_id=personas.owner.pk)


def test_requeue_refuses_anything_not_active(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    assert not handoff_requeue(handoff_id=handoff.pk, reason="released", actor=None)
    assert not handoff_requeue(handoff_id=0, reason="released", actor=None)
    assert outbox_events("handoff.released") == []
    assert Membership.objects.exists()


def _assert_requeued(handoff: Handoff, reason: str) -> None:
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.PENDING and handoff.claimed_by_id is None
    last = handoff.conversation.events.order_by("-seq").first()
    assert last is not None and last.kind == "handoff.released" and last.data["reason"] == reason


def test_removing_the_member_requeues_their_live_chats_in_that_workspace_only(bot, personas) -> None:
    from tests.factories import make_chatbot, make_workspace
    from tests.handoff_helpers import enable_handoff

    other = make_workspace("Second", owner=personas.outsider)
    from chatbots.services import membership_add

    membership_add(workspace=other, user=personas.teammate)
    other_bot = enable_handoff(make_chatbot(other, "Second bot"))
    _v, _c, here = _live(bot, personas.teammate)
    _v2, _c2, elsewhere = _live(other_bot, personas.teammate)
    Membership.objects.get(user=personas.teammate, workspace=personas.workspace).delete()
    _assert_requeued(here, "member_removed")
    elsewhere.refresh_from_db()
    assert elsewhere.status == Handoff.Status.ACTIVE and elsewhere.claimed_by == personas.teammate


def test_moving_a_membership_to_another_workspace_requeues(bot, personas) -> None:
    _v, _c, handoff = _live(bot, personas.teammate)
    membership = Membership.objects.get(user=personas.teammate, workspace=personas.workspace)
    membership.workspace = personas.other_workspace
    membership.save()
    _assert_requeued(handoff, "member_removed")


def test_a_role_change_keeps_the_chat(bot, personas) -> None:
    _v, _c, handoff = _live(bot, personas.teammate)
    membership = Membership.objects.get(user=personas.teammate, workspace=personas.workspace)
    membership.role = Membership.Role.ADMIN
    membership.save()
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.ACTIVE


def test_deactivating_the_agent_requeues(bot, personas) -> None:
    _v, _c, handoff = _live(bot, personas.teammate)
    personas.teammate.is_active = False
    personas.teammate.save()
    _assert_requeued(handoff, "agent_deactivated")


def test_deleting_the_agent_requeues_before_the_claim_is_nulled(bot, personas) -> None:
    _v, conversation, handoff = _live(bot, personas.teammate)
    personas.teammate.first_name = "Alice"
    personas.teammate.save()
    personas.teammate.delete()
    _assert_requeued(handoff, "agent_deleted")
    last = conversation.events.order_by("-seq").first()
    assert last is not None and last.text.startswith("Alice left the conversation.")


def test_deleting_the_workspace_deletes_its_handoffs_without_requeue(bot, personas) -> None:
    _live(bot, personas.teammate)
    personas.workspace.delete()
    assert not Handoff.objects.exists()
    assert outbox_events("handoff.released") == []


def test_the_admin_removes_a_member_and_the_chat_returns_to_the_queue(bot, personas, staff_user, client) -> None:
    _v, _c, handoff = _live(bot, personas.teammate)
    membership = Membership.objects.get(user=personas.teammate, workspace=personas.workspace)
    client.force_login(staff_user)
    response = client.post(f"/admin/chatbots/membership/{membership.pk}/delete/", {"post": "yes"})
    assert response.status_code == 302
    _assert_requeued(handoff, "member_removed")


def test_the_sweep_requeues_what_no_hook_saw(bot, personas) -> None:
    from django.contrib.auth.models import User as UserModel

    from handoff.transitions.requeue import handoffs_requeue_stranded

    _v, _c, by_update = _live(bot, personas.teammate)
    _v2, _c2, nulled = _live(bot, personas.owner)
    _v3, _c3, fine = _live(bot, personas.owner)
    UserModel.objects.filter(pk=personas.teammate.pk).update(is_active=False)  # bypasses the signals
    Handoff.objects.filter(pk=nulled.pk).update(claimed_by=None)  # as a deletion before this fix left it
    assert handoffs_requeue_stranded() == 2
    _assert_requeued(by_update, "agent_missing")
    _assert_requeued(nulled, "agent_missing")
    fine.refresh_from_db()
    assert fine.status == Handoff.Status.ACTIVE
    assert handoffs_requeue_stranded() == 0


def test_a_removed_member_cannot_claim(bot, personas) -> None:
    from handoff.transitions.shared import agent_can_act_locked

    assert agent_can_act_locked(user_id=personas.teammate.pk, workspace_id=personas.workspace.pk)
    personas.teammate.is_active = False
    personas.teammate.save()
    assert not agent_can_act_locked(user_id=personas.teammate.pk, workspace_id=personas.workspace.pk)


def test_removing_a_member_ends_a_transfer_offered_to_them(bot, personas, monkeypatch) -> None:
    from handoff.transitions import transfer as transfer_module
    from handoff.transitions.transfer import handoff_transfer

    monkeypatch.setattr(transfer_module, "online_agent_ids", lambda *, workspace_id: {personas.teammate.pk})
    _v, conversation, handoff = _live(bot, personas.owner)
    handoff_transfer(
        agent=personas.owner, conversation_public_id=str(conversation.public_id), to_user_id=personas.teammate.pk
    )
    handoff.refresh_from_db()
    assert handoff.offered_to_id == personas.teammate.pk
    Membership.objects.get(user=personas.teammate, workspace=personas.workspace).delete()
    handoff.refresh_from_db()
    assert handoff.status == Handoff.Status.PENDING and handoff.offered_to_id is None
    assert event_kinds(conversation)[-1] == "handoff.transfer_ended"


def test_a_requeued_chat_that_once_timed_out_is_not_claimed_late_again(bot, personas) -> None:
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    assert handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)
    key = str(conversation.public_id)
    assert handoff_claim(agent=personas.teammate, conversation_public_id=key).timed_out_at is not None
    assert conversation.events.get(kind="handoff.claimed").data == {"late": True}

    assert handoff_requeue(handoff_id=handoff.pk, reason="released", actor=personas.teammate)
    handoff.refresh_from_db()
    assert handoff.timed_out_at is None and handoff.busy_reason == ""
    assert conversation_state(conversation)["handoff"]["busy_reason"] == ""

    handoff_claim(agent=personas.owner, conversation_public_id=key)
    claims = list(conversation.events.filter(kind="handoff.claimed").order_by("seq").values_list("data", flat=True))
    assert claims == [{"late": True}, {"late": False}]
    assert [e.payload["data"]["late"] for e in outbox_events("handoff.claimed")] == [True, False]
