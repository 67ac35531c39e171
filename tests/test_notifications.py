"""Who is told, and when: handoff requests, visitor messages in live chats, @mentions — never another
workspace's agent, never an Offline one for a new handoff; what reaches their console sockets and
which Web Push subscriptions are queued."""

from __future__ import annotations

from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import User

from chatbots.models import Membership
from conversations.models import Note
from handoff.transitions.claim import handoff_claim
from notifications.models import PushSubscription
from notifications.notices import handoff_notice, mention_notice, message_notice, notice_build, one_line
from notifications.services import agent_notify, notice_deliver, notify_mention
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request, say
from tests.push_helpers import BrowserKeys

pytestmark = pytest.mark.django_db


@pytest.fixture
def bot(personas: Personas):
    return enable_handoff(personas.chatbot)


def _subscribe(user: User, host: str = "fcm.googleapis.com") -> PushSubscription:
    keys = BrowserKeys()
    return PushSubscription.objects.create(
        user=user, endpoint=f"https://{host}/send/{user.pk}-{keys.auth}", p256dh=keys.p256dh, auth=keys.auth
    )


def _queued(send_task: mock.MagicMock, name: str) -> list[tuple[Any, ...]]:
    """The args of the tasks named ``name`` sent through the (patched, app-wide) ``send_task``."""
    return [tuple(c.kwargs["args"]) for c in send_task.call_args_list if c.args and c.args[0] == name]


def test_a_handoff_request_queues_its_notice_on_commit_only(bot, django_capture_on_commit_callbacks) -> None:
    visitor, conversation = new_visitor(bot)
    with mock.patch("notifications.services.current_app.send_task") as send_task:
        with django_capture_on_commit_callbacks(execute=False) as callbacks:
            request(visitor, conversation)
        assert _queued(send_task, "notifications.tasks.agent_notify") == []  # nothing before the commit
        for callback in callbacks:
            callback()
    assert _queued(send_task, "notifications.tasks.agent_notify") == [("handoff", conversation.pk, 0)]
    queues = {c.kwargs["queue"] for c in send_task.call_args_list if c.args[0] == "notifications.tasks.agent_notify"}
    assert queues == {"celery"}


def test_a_handoff_is_told_to_the_workspace_members_who_are_not_offline(bot, personas: Personas) -> None:
    visitor, conversation = new_visitor(bot)
    say(visitor, conversation, "My <b>order</b> never\narrived")
    request(visitor, conversation)
    notice = handoff_notice(conversation_id=conversation.pk)
    assert notice is not None
    assert set(notice.user_ids) == {personas.owner.pk, personas.teammate.pk}  # never the other workspace's
    assert notice.workspace_id == personas.workspace.pk
    assert notice.title.endswith("asks for a person · Acme bot")
    assert notice.body == "“My <b>order</b> never arrived”"  # one line of plain text, shown as text

    Membership.objects.filter(user=personas.teammate).update(availability=Membership.Availability.OFFLINE)
    assert handoff_notice(conversation_id=conversation.pk).user_ids == (personas.owner.pk,)  # type: ignore[union-attr]
    Membership.objects.filter(user=personas.teammate).update(availability=Membership.Availability.AWAY)
    User.objects.filter(pk=personas.owner.pk).update(is_active=False)
    assert handoff_notice(conversation_id=conversation.pk).user_ids == (personas.teammate.pk,)  # type: ignore[union-attr]


def test_a_handoff_claimed_before_the_worker_ran_tells_nobody(bot, personas: Personas) -> None:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    handoff_claim(agent=personas.teammate, conversation_public_id=str(conversation.public_id))
    assert handoff_notice(conversation_id=conversation.pk) is None


def test_a_visitor_message_is_told_only_to_the_agent_holding_the_live_chat(
    bot, personas: Personas, django_capture_on_commit_callbacks
) -> None:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    waiting = say(visitor, conversation, "still there?").event
    assert message_notice(conversation_id=conversation.pk, event_id=waiting.pk) is None  # nobody holds it yet

    handoff_claim(agent=personas.teammate, conversation_public_id=str(conversation.public_id))
    with (
        mock.patch("notifications.services.current_app.send_task") as send_task,
        django_capture_on_commit_callbacks(execute=True),
    ):
        event = say(visitor, conversation, "Hello\u202e there").event
    assert _queued(send_task, "notifications.tasks.agent_notify") == [("message", conversation.pk, event.pk)]
    notice = message_notice(conversation_id=conversation.pk, event_id=event.pk)
    assert notice is not None
    assert notice.user_ids == (personas.teammate.pk,)
    assert notice.body == "Hello there"  # direction overrides out

    # The agent removed from the workspace since: nobody (the chat goes back to the queue anyway).
    Membership.objects.filter(user=personas.teammate).delete()
    assert message_notice(conversation_id=conversation.pk, event_id=event.pk) is None


def test_a_message_of_another_conversation_is_never_told(bot, personas: Personas) -> None:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    handoff_claim(agent=personas.teammate, conversation_public_id=str(conversation.public_id))
    other_visitor, other = new_visitor(enable_handoff(personas.other_chatbot))
    foreign = say(other_visitor, other, "secret of the other workspace").event
    # A forged pair (this conversation, that event) finds nothing.
    assert message_notice(conversation_id=conversation.pk, event_id=foreign.pk) is None


def test_an_open_conversation_queues_no_notice_per_message(bot, django_capture_on_commit_callbacks) -> None:
    visitor, conversation = new_visitor(bot)
    with (
        mock.patch("notifications.services.current_app.send_task") as send_task,
        django_capture_on_commit_callbacks(execute=True),
    ):
        say(visitor, conversation, "a question for the AI")
    assert _queued(send_task, "notifications.tasks.agent_notify") == []


def test_a_mention_tells_the_mentioned_members_of_that_workspace_only(
    bot, personas: Personas, django_capture_on_commit_callbacks
) -> None:
    _, conversation = new_visitor(bot)
    note = Note.objects.create(
        conversation=conversation,
        author=personas.owner,
        author_name="Olivia",
        text="@teammate can you take this?\nThanks",
        mentions=[personas.teammate.pk, personas.owner.pk, personas.outsider.pk, "x", True],
    )
    with (
        mock.patch("notifications.services.current_app.send_task") as send_task,
        django_capture_on_commit_callbacks(execute=True),
    ):
        notify_mention(note_id=note.pk, conversation_id=conversation.pk)
    assert _queued(send_task, "notifications.tasks.agent_notify") == [("mention", conversation.pk, note.pk)]
    notice = mention_notice(note_id=note.pk)
    assert notice is not None
    # Not the author, not the outsider (another workspace), nothing that is not a user id.
    assert notice.user_ids == (personas.teammate.pk,)
    assert (notice.title, notice.body) == ("Olivia mentioned you", "@teammate can you take this? Thanks")
    assert mention_notice(note_id=note.pk + 1000) is None


def test_the_notice_reaches_the_console_sockets_and_the_subscriptions_of_its_recipients(
    bot, personas: Personas
) -> None:
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    mine = _subscribe(personas.teammate)
    owners = _subscribe(personas.owner)
    _subscribe(personas.outsider)  # another workspace: never queued
    Membership.objects.filter(user=personas.owner).update(availability=Membership.Availability.OFFLINE)
    notice = notice_build(kind="handoff", conversation_id=conversation.pk, ref_id=0)
    assert notice is not None
    with (
        mock.patch("notifications.services.send_now_rollback_unsafe") as send,
        mock.patch("notifications.services.current_app.send_task") as send_task,
    ):
        assert notice_deliver(notice=notice) == 1
    groups = [c.args[0] for c in send.call_args_list]
    assert groups == [[f"console-user.{personas.teammate.pk}"]]
    frame = send.call_args.args[1]
    assert frame["type"] == "notify" and frame["kind"] == "handoff"
    assert frame["conversation"] == str(conversation.public_id)
    assert frame["url"] == f"/dashboard/notifications/open/{conversation.public_id}/"
    pushes = _queued(send_task, "notifications.tasks.push_deliver")
    assert [p[0] for p in pushes] == [mine.pk]
    assert owners.pk not in [p[0] for p in pushes]
    assert {c.kwargs["queue"] for c in send_task.call_args_list} == {"deliveries"}


def test_with_web_push_off_only_the_sockets_are_told(personas: Personas, settings) -> None:
    settings.WEB_PUSH_ENABLED = False
    _subscribe(personas.teammate)
    with (
        mock.patch("notifications.services.send_now_rollback_unsafe") as send,
        mock.patch("notifications.services.current_app.send_task") as send_task,
    ):
        queued = agent_notify(
            user_ids=[personas.teammate.pk],
            kind="message",
            workspace_id=personas.workspace.pk,
            conversation_public_id="5b0c8f3e-0000-4000-8000-000000000000",
            title="t",
            body="b",
        )
    assert queued == 0 and send.call_count == 1 and send_task.call_count == 0


def test_texts_are_one_bounded_line() -> None:
    assert one_line("a\x00b\r\n\tc" + "x" * 500, 20) == "a b c" + "x" * 14 + "…"
    assert len(one_line("y" * 500, 140)) == 140
