"""Internal notes: the service (idempotency, bounds, members only, mentions), its API, its console
socket command and the conversation page (rendered in the thread, escaped)."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client

from chatbots.models import Membership
from chatbots.services import membership_add
from conversations.models import Conversation, Note
from conversations.notes import mentioned_member_ids, note_add, note_create, notes_for_conversation
from pivra.errors import DomainError
from tests.factories import Personas, make_user
from tests.handoff_helpers import new_visitor, say

pytestmark = pytest.mark.django_db


@pytest.fixture
def conversation(personas: Personas) -> Conversation:
    visitor, conversation = new_visitor(personas.chatbot)
    say(visitor, conversation, "Hello, I need help")
    conversation.refresh_from_db()
    return conversation


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def test_a_note_is_stored_after_the_last_event_and_never_as_an_event(
    personas: Personas, conversation: Conversation
) -> None:
    events_before = conversation.events.count()
    created = note_create(conversation=conversation, author=personas.teammate, text="  VIP customer  ", client_id="n1")
    note = created.note
    assert (created.duplicate, note.text, note.after_seq) == (False, "VIP customer", conversation.last_seq)
    assert note.author_name == "teammate"
    conversation.refresh_from_db()
    assert conversation.events.count() == events_before  # not in the event log: the visitor's seq has no gap


def test_a_resend_with_the_same_client_id_is_stored_once(personas: Personas, conversation: Conversation) -> None:
    first = note_create(conversation=conversation, author=personas.teammate, text="Check the order", client_id="n1")
    again = note_create(conversation=conversation, author=personas.teammate, text="Check the order", client_id="n1")
    assert (again.duplicate, again.note.pk) == (True, first.note.pk)
    with pytest.raises(DomainError) as reused:
        note_create(conversation=conversation, author=personas.teammate, text="Something else", client_id="n1")
    assert (reused.value.code, reused.value.status) == ("client_id_reused", 409)
    with pytest.raises(DomainError) as other_author:
        note_create(conversation=conversation, author=personas.owner, text="Check the order", client_id="n1")
    assert other_author.value.code == "client_id_reused"
    assert Note.objects.filter(conversation=conversation).count() == 1


@pytest.mark.parametrize(
    ("text", "code", "status"),
    [
        ("", "note_empty", 422),
        ("   \n ", "note_empty", 422),
        ("x" * 2001, "note_too_long", 413),
        ("a\x00b", "invalid_input", 400),
    ],
)
def test_empty_overlong_and_unstorable_notes_are_refused(
    personas: Personas, conversation: Conversation, text: str, code: str, status: int
) -> None:
    with pytest.raises(DomainError) as refused:
        note_create(conversation=conversation, author=personas.teammate, text=text, client_id=None)
    assert (refused.value.code, refused.value.status) == (code, status)
    assert not Note.objects.exists()


def test_a_note_of_exactly_the_limit_is_kept(personas: Personas, conversation: Conversation) -> None:
    note = note_create(conversation=conversation, author=personas.teammate, text="x" * 2000, client_id=None).note
    assert len(note.text) == 2000


def test_only_members_of_the_conversations_workspace_may_write_a_note(
    personas: Personas, conversation: Conversation
) -> None:
    for stranger in (personas.outsider, make_user("nobody")):
        with pytest.raises(DomainError) as refused:
            note_create(conversation=conversation, author=stranger, text="hi", client_id=None)
        assert (refused.value.code, refused.value.status) == ("conversation_not_found", 404)
        with pytest.raises(DomainError):
            note_add(author=stranger, conversation_public_id=str(conversation.public_id), text="hi", client_id=None)
    personas.teammate.is_active = False
    personas.teammate.save()
    with pytest.raises(DomainError):
        note_create(conversation=conversation, author=personas.teammate, text="hi", client_id=None)
    assert not Note.objects.exists()


def test_mentions_are_members_only_by_username_or_display_name(personas: Personas, conversation: Conversation) -> None:
    alice = make_user("alice.lee")
    alice.first_name = "Alice"
    alice.save()
    membership_add(workspace=personas.workspace, user=alice, role=Membership.Role.AGENT)
    text = (
        "@Alice and @teammate please look; not @outsider, not mail@teammate.com, not @teammates, "
        "again @alice.lee, and @owner (me)"
    )
    note = note_create(conversation=conversation, author=personas.owner, text=text, client_id=None).note
    assert note.mentions == [alice.pk, personas.teammate.pk]  # the outsider is no member; the author is not told


def test_mention_parsing_prefers_the_longest_name_and_stops_at_word_ends() -> None:
    ann, annabel = User(pk=1, username="ann"), User(pk=2, username="annabel")
    members = [ann, annabel]
    assert mentioned_member_ids(text="@annabel hi", members=members, author_id=None) == [2]
    assert mentioned_member_ids(text="@ann, hi @ANN", members=members, author_id=None) == [1]
    assert mentioned_member_ids(text="@anna", members=members, author_id=None) == []
    assert mentioned_member_ids(text="x@ann", members=members, author_id=None) == []


def test_notes_come_in_thread_order(personas: Personas, conversation: Conversation) -> None:
    note_create(conversation=conversation, author=personas.teammate, text="first", client_id=None)
    visitor = conversation.visitor
    say(visitor, conversation, "Are you there?")
    conversation.refresh_from_db()
    note_create(conversation=conversation, author=personas.owner, text="second", client_id=None)
    notes = notes_for_conversation(conversation=conversation)
    assert [n.text for n in notes] == ["first", "second"]
    assert notes[0].after_seq < notes[1].after_seq == conversation.last_seq


def test_the_api_adds_and_lists_notes_and_refuses_another_workspace(
    personas: Personas, conversation: Conversation
) -> None:
    url = f"/api/console/conversations/{conversation.public_id}/notes"
    client = _client(personas.teammate)
    response = client.post(
        url, {"text": "Refund approved @owner", "client_id": "api-1"}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["duplicate"], body["note"]["text"], body["note"]["mentions"]) == (
        False,
        "Refund approved @owner",
        [personas.owner.pk],
    )
    again = client.post(url, {"text": "Refund approved @owner", "client_id": "api-1"}, content_type="application/json")
    assert (again.status_code, again.json()["duplicate"]) == (201, True)
    listed = client.get(url).json()
    assert [n["text"] for n in listed] == ["Refund approved @owner"]

    outsider = _client(personas.outsider)
    assert outsider.get(url).json()["code"] == "conversation_not_found"
    refused = outsider.post(url, {"text": "hi", "client_id": "x-1"}, content_type="application/json")
    assert (refused.status_code, refused.json()["code"]) == (404, "conversation_not_found")
    too_long = client.post(url, {"text": "y" * 5001}, content_type="application/json")
    assert too_long.status_code == 413 and set(too_long.json()) == {"code", "detail"}
    assert Client().get(url).status_code == 401
    assert Note.objects.count() == 1


def test_the_conversation_page_shows_notes_escaped_with_their_label(
    personas: Personas, conversation: Conversation
) -> None:
    note_create(conversation=conversation, author=personas.teammate, text="<script>alert(1)</script>", client_id=None)
    page = _client(personas.owner).get(f"/dashboard/conversations/{conversation.public_id}/")
    html = page.content.decode()
    assert page.status_code == 200
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html and "<script>alert(1)" not in html
    assert "Internal note · only your team sees this" in html
    assert "data-note-box" in html and 'data-mode="note"' in html
    # The note sits after the visitor's message it followed.
    assert html.index("Hello, I need help") < html.index("&lt;script&gt;alert(1)")


def test_the_page_thread_places_each_note_after_the_event_it_followed(
    personas: Personas, conversation: Conversation
) -> None:
    from pivra.console.note_thread import thread_with_notes

    events = list(conversation.events.order_by("seq"))
    items = [{"event": e, "style": "visitor"} for e in events]
    first = Note(pk=1, after_seq=0, text="before everything")
    middle = Note(pk=2, after_seq=events[0].seq, text="after the first event")
    last = Note(pk=3, after_seq=events[-1].seq, text="at the end")
    for note in (first, middle, last):
        note.created_at = conversation.created_at
    merged = thread_with_notes(items, [last, middle, first])
    order = [item["note"].text if item["style"] == "note" else item["event"].seq for item in merged]
    assert order[0] == "before everything" and order[-1] == "at the end"
    assert order.index("after the first event") == order.index(events[0].seq) + 1
    assert len(merged) == len(events) + 3
