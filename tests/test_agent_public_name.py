"""Visitors see an agent's first name, or "Support agent" — never the username (half of a login)."""

from __future__ import annotations

import importlib
import json

import pytest
from django.apps import apps as django_apps

from conversations.models import Event
from handoff.state import conversation_state
from handoff.transitions.claim import handoff_claim
from handoff.transitions.reply import handoff_reply
from pivra.realtime import visitor_group
from tests.channel_helpers import frames_heard
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request

pytestmark = pytest.mark.django_db


def _claim_and_reply_heard_by_the_widget(personas: Personas, capture) -> tuple[list[dict], dict]:
    enable_handoff(personas.chatbot)
    visitor, conversation = new_visitor(personas.chatbot)
    request(visitor, conversation)
    key = str(conversation.public_id)

    def claim_and_reply() -> None:
        with capture(execute=True):  # the test is one transaction: run the broadcasts its commits would
            handoff_claim(agent=personas.teammate, conversation_public_id=key)
        with capture(execute=True):
            handoff_reply(agent=personas.teammate, conversation_public_id=key, text="Hello!", client_id="r1")

    frames = frames_heard(visitor_group(visitor.public_id), claim_and_reply)
    return frames, conversation_state(conversation)


def test_an_agent_without_a_first_name_reaches_the_widget_as_support_agent(
    personas: Personas, django_capture_on_commit_callbacks
) -> None:
    frames, state = _claim_and_reply_heard_by_the_widget(personas, django_capture_on_commit_callbacks)

    events = [f for f in frames if f["type"] == "event"]
    assert [(f["kind"], f["agent"], f["text"]) for f in events] == [
        ("handoff.claimed", "Support agent", "Support agent joined the conversation."),
        ("message", "Support agent", "Hello!"),
    ]
    assert [f["state"]["handoff"]["agent"] for f in frames if f["type"] == "state"] == ["Support agent"]
    assert state["handoff"]["agent"] == "Support agent"
    assert "teammate" not in json.dumps(frames) + json.dumps(state)
    # The history a reconnecting widget replays is built from the stored events: same names.
    assert set(Event.objects.filter(agent=personas.teammate).values_list("agent_name", flat=True)) == {"Support agent"}


def test_an_agent_with_a_first_name_reaches_the_widget_by_it(
    personas: Personas, django_capture_on_commit_callbacks
) -> None:
    personas.teammate.first_name = "  Bob "
    personas.teammate.save()
    frames, state = _claim_and_reply_heard_by_the_widget(personas, django_capture_on_commit_callbacks)

    assert {f["agent"] for f in frames if f["type"] == "event"} == {"Bob"}
    assert "Bob joined the conversation." in [f["text"] for f in frames if f["type"] == "event"]
    assert state["handoff"]["agent"] == "Bob"
    assert "teammate" not in json.dumps(frames) + json.dumps(state)


def test_events_stored_with_a_username_are_renamed_by_the_migration(
    personas: Personas, django_capture_on_commit_callbacks
) -> None:
    _claim_and_reply_heard_by_the_widget(personas, django_capture_on_commit_callbacks)
    stored = Event.objects.filter(agent=personas.teammate)
    stored.update(agent_name="teammate")  # as events were stored before
    stored.filter(kind="handoff.claimed").update(text="teammate joined the conversation.")
    other = Event.objects.filter(agent__isnull=True).values_list("pk", "agent_name", "text")
    before = set(other)

    importlib.import_module("handoff.migrations.0002_agent_public_names").forwards(django_apps, None)

    assert set(stored.values_list("agent_name", flat=True)) == {"Support agent"}
    assert stored.get(kind="handoff.claimed").text == "Support agent joined the conversation."
    assert set(other) == before
