"""Internal notes, issue-16 review fixes: ambiguous @first names, the API's own refusal codes, the
HTTP rate limit, the per-(author, teammate) budget of mention alerts, and no member load for a note
without "@"."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.db import connection
from django.test import Client
from django.test.utils import CaptureQueriesContext

from chatbots.models import Membership
from conversations import notes
from conversations.models import Conversation, Note
from conversations.notes import mentions_in, note_create
from tests.factories import Personas, make_user
from tests.handoff_helpers import new_visitor, say

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(personas: Personas) -> Conversation:
    visitor, conversation = new_visitor(personas.chatbot)
    say(visitor, conversation, "Hello, I need help")
    conversation.refresh_from_db()
    return conversation


def _member(personas: Personas, username: str, first_name: str) -> User:
    user = make_user(username)
    user.first_name = first_name
    user.save()
    # Past the plan's seat count on purpose: the mention rules do not depend on it.
    Membership.objects.create(workspace=personas.workspace, user=user, role=Membership.Role.AGENT)
    return user


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_first_name_two_members_share_mentions_nobody_and_is_reported(
    personas: Personas, conversation: Conversation
) -> None:
    ann_lee, ann_roe = _member(personas, "ann.lee", "Ann"), _member(personas, "ann.roe", "Ann")
    created = note_create(
        conversation=conversation, author=personas.owner, text="@Ann can you check? cc @teammate", client_id=None
    )
    assert created.note.mentions == [personas.teammate.pk]  # neither Ann is told
    assert created.ambiguous_mentions == ["ann"]
    assert notes.note_ack(created)["ambiguous_mentions"] == ["ann"]
    # Their usernames still name each of them alone.
    by_username = note_create(
        conversation=conversation, author=personas.owner, text="@ann.roe @ann.lee", client_id=None
    )
    assert (by_username.note.mentions, by_username.ambiguous_mentions) == ([ann_roe.pk, ann_lee.pk], [])


def test_a_username_names_its_member_even_when_it_is_someone_elses_first_name() -> None:
    ann = User(pk=1, username="ann", first_name="Annette")
    other = User(pk=2, username="a.roe", first_name="Ann")
    assert mentions_in(text="@ann", members=[ann, other], author_id=None).user_ids == [1]
    twins = [User(pk=3, username="x", first_name="Bo"), User(pk=4, username="y", first_name="bo")]
    found = mentions_in(text="@bo and @BO", members=twins, author_id=None)
    assert (found.user_ids, found.ambiguous) == ([], ["bo"])


def test_the_api_answers_with_the_notes_own_refusal_codes(personas: Personas, conversation: Conversation) -> None:
    url = f"/api/console/conversations/{conversation.public_id}/notes"
    client = _client(personas.teammate)
    for text, status, code in (
        ("", 422, "note_empty"),
        ("  \n ", 422, "note_empty"),
        ("y" * 2001, 413, "note_too_long"),
    ):
        answer = client.post(url, {"text": text}, content_type="application/json")
        assert (answer.status_code, answer.json()["code"]) == (status, code), text[:10]
    ambiguous = client.post(url, {"text": "hi"}, content_type="application/json").json()
    assert ambiguous["ambiguous_mentions"] == []
    assert Note.objects.count() == 1


def test_the_api_limits_notes_per_agent(
    personas: Personas, conversation: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    from conversations import notes_api

    monkeypatch.setattr(notes_api, "NOTES_PER_MINUTE", 3)
    url = f"/api/console/conversations/{conversation.public_id}/notes"
    client = _client(personas.teammate)
    codes = [client.post(url, {"text": f"n{i}"}, content_type="application/json").status_code for i in range(4)]
    assert codes[:3] == [201, 201, 201]
    refused = client.post(url, {"text": "again"}, content_type="application/json")
    assert (refused.status_code, refused.json()["code"]) == (429, "rate_limited")
    # Another agent has a budget of their own.
    assert _client(personas.owner).post(url, {"text": "mine"}, content_type="application/json").status_code == 201
    assert Note.objects.count() == 4


def test_mention_alerts_are_limited_per_author_and_teammate(
    personas: Personas, conversation: Conversation, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[list[str], dict[str, Any]]] = []
    pushed: list[int] = []
    monkeypatch.setattr(notes, "send_on_commit", lambda groups, frame: sent.append((list(groups), frame)))
    monkeypatch.setattr(notes, "_push_mentions", lambda *, note_id, conversation_id: pushed.append(note_id))
    monkeypatch.setattr(notes, "MENTION_ALERTS_PER_MINUTE", 2)
    for i in range(4):
        note_create(conversation=conversation, author=personas.owner, text=f"@teammate {i}", client_id=None)
    alerts = [frame for _, frame in sent if frame["type"] == "note.mention"]
    assert len(alerts) == 2 and len(pushed) == 2
    assert Note.objects.filter(mentions=[personas.teammate.pk]).count() == 4  # every note is kept
    # Another author may still tell the same teammate.
    note_create(conversation=conversation, author=_member(personas, "carol", "Carol"), text="@teammate", client_id=None)
    assert len([frame for _, frame in sent if frame["type"] == "note.mention"]) == 3


def test_a_note_without_an_at_sign_loads_no_members(personas: Personas, conversation: Conversation) -> None:
    for i in range(3):
        _member(personas, f"agent{i}", f"Agent{i}")
    with CaptureQueriesContext(connection) as plain:
        note_create(conversation=conversation, author=personas.teammate, text="no mention here", client_id=None)
    assert not any("first_name" in q["sql"] for q in plain.captured_queries)
    with CaptureQueriesContext(connection) as mention:
        note_create(conversation=conversation, author=personas.teammate, text="@owner look", client_id=None)
    member_loads = [q["sql"] for q in mention.captured_queries if '"first_name"' in q["sql"]]
    assert len(member_loads) == 1 and 'ORDER BY "auth_user"."id"' in member_loads[0]
