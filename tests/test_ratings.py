"""Satisfaction: the visitor rates a resolved conversation once; the rating is an event, the
conversation's columns and a ``conversation.rated`` outbox event, all in one transaction."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction
from django.test import Client

from actions.events import EVENT_INFO, EventType
from actions.messages import summarize
from actions.models import OutboxEvent
from actions.samples import sample_payload
from chatbots.models import Chatbot
from conversations.frames import event_frame
from conversations.models import Conversation, Event
from handoff.ratings import conversation_rate
from handoff.state import conversation_state
from handoff.transitions.claim import handoff_claim
from handoff.transitions.reply import handoff_reply
from handoff.transitions.resolve import handoff_resolve
from pivra.errors import DomainError, NotFound
from pivra.widget.survey import widget_rate
from pivra.widget.tokens import visitor_token
from tests.factories import Personas
from tests.test_actions_support import escalate

pytestmark = pytest.mark.django_db


def resolved(bot: Chatbot, *, agent: Any = None, claim: bool = True, reply: bool = True) -> Conversation:
    """A conversation resolved by ``agent`` (claimed and answered first unless ``claim`` is False: AI only)."""
    conversation = escalate(bot).conversation
    key = str(conversation.public_id)
    if claim:
        handoff_claim(agent=agent, conversation_public_id=key)
        if reply:
            handoff_reply(agent=agent, conversation_public_id=key, text="Happy to help.", client_id="resolved-reply")
    handoff_resolve(agent=agent, conversation_public_id=key)
    conversation.refresh_from_db()
    return conversation


def _code(call: Any) -> str:
    with pytest.raises(DomainError) as refused:
        call()
    return refused.value.code


def test_a_rating_is_an_event_the_columns_and_an_outbox_event(personas: Personas) -> None:
    personas.owner.first_name = "Alice"
    personas.owner.save()
    conversation = resolved(personas.chatbot, agent=personas.owner)
    event = conversation_rate(conversation=conversation, score=1, comment="Too slow <b>", client_id="r-1")

    assert (event.kind, event.author, event.text) == ("rating", "visitor", "\U0001f44e Bad · \u201cToo slow <b>\u201d")
    assert event.data == {"score": 1, "scale": "thumbs", "comment": "Too slow <b>"}
    conversation.refresh_from_db()
    assert (conversation.rating, conversation.rating_comment) == (1, "Too slow <b>")
    assert conversation.rated_at is not None
    # The visitor's frame carries their own answer (and only it).
    assert event_frame(event, conversation)["data"] == {"score": 1, "scale": "thumbs", "comment": "Too slow <b>"}

    [row] = OutboxEvent.objects.filter(type="conversation.rated")
    data = row.payload["data"]
    assert data["rating"]["score"] == 1 and data["rating"]["positive"] is False
    assert data["rating"]["comment"] == "Too slow <b>" and data["rating"]["scale"] == "thumbs"
    assert data["agent"] == {"id": personas.owner.pk, "name": "Alice"}
    assert data["handled_by_person"] is True
    assert data["conversation"]["id"] == str(conversation.public_id)
    assert data["conversation"]["status"] == "closed"


def test_a_second_rating_is_refused_and_the_first_stands(personas: Personas) -> None:
    conversation = resolved(personas.chatbot, agent=personas.owner)
    conversation_rate(conversation=conversation, score=5)
    assert _code(lambda: conversation_rate(conversation=conversation, score=1, comment="changed my mind")) == (
        "already_rated"
    )
    conversation.refresh_from_db()
    assert (conversation.rating, conversation.rating_comment) == (5, "")
    assert Event.objects.filter(conversation=conversation, kind="rating").count() == 1
    assert OutboxEvent.objects.filter(type="conversation.rated").count() == 1


def test_a_resend_with_the_same_client_id_returns_the_stored_rating(personas: Personas) -> None:
    conversation = resolved(personas.chatbot, agent=personas.owner)
    first = conversation_rate(conversation=conversation, score=5, client_id="same")
    again = conversation_rate(conversation=conversation, score=5, client_id="same")
    assert again.pk == first.pk
    assert _code(lambda: conversation_rate(conversation=conversation, score=1, client_id="same")) == "client_id_reused"
    assert OutboxEvent.objects.filter(type="conversation.rated").count() == 1


def test_a_rating_before_the_resolve_is_refused(personas: Personas) -> None:
    conversation = escalate(personas.chatbot).conversation
    assert _code(lambda: conversation_rate(conversation=conversation, score=5)) == "not_resolved"
    handoff_claim(agent=personas.owner, conversation_public_id=str(conversation.public_id))
    assert _code(lambda: conversation_rate(conversation=conversation, score=5)) == "not_resolved"
    assert not Event.objects.filter(kind="rating").exists()


@pytest.mark.parametrize(
    ("scale", "score", "ok"),
    [
        ("thumbs", 1, True),
        ("thumbs", 5, True),
        ("thumbs", 3, False),
        ("thumbs", 4, False),
        ("five", 1, True),
        ("five", 3, True),
        ("five", 5, True),
        ("five", 0, False),
        ("five", 6, False),
        ("five", -1, False),
        ("five", True, False),
    ],
)
def test_the_score_must_be_on_the_chatbots_scale(personas: Personas, scale: str, score: int, ok: bool) -> None:
    Chatbot.objects.filter(pk=personas.chatbot.pk).update(satisfaction_survey=scale)
    personas.chatbot.refresh_from_db()
    conversation = resolved(personas.chatbot, agent=personas.owner)
    if ok:
        assert conversation_rate(conversation=conversation, score=score).data["score"] == score
    else:
        assert _code(lambda: conversation_rate(conversation=conversation, score=score)) == "invalid_score"
        assert not OutboxEvent.objects.filter(type="conversation.rated").exists()


def test_the_comment_is_bounded_to_1000_characters(personas: Personas) -> None:
    conversation = resolved(personas.chatbot, agent=personas.owner)
    too_long = "x" * 1001
    assert _code(lambda: conversation_rate(conversation=conversation, score=5, comment=too_long)) == (
        "comment_too_long"
    )
    event = conversation_rate(conversation=conversation, score=5, comment="  " + "y" * 1000 + "  \x00")
    assert event.data["comment"] == "y" * 1000


def test_no_rating_when_the_owner_turned_the_survey_off(personas: Personas) -> None:
    Chatbot.objects.filter(pk=personas.chatbot.pk).update(satisfaction_survey="off")
    personas.chatbot.refresh_from_db()
    conversation = resolved(personas.chatbot, agent=personas.owner)
    assert conversation_state(conversation)["survey"] is None
    assert _code(lambda: conversation_rate(conversation=conversation, score=5)) == "survey_off"


def test_the_state_says_which_scale_to_show_and_the_score_once_given(personas: Personas) -> None:
    conversation = escalate(personas.chatbot).conversation
    assert conversation_state(conversation)["survey"] is None  # not resolved yet
    conversation = resolved(personas.chatbot, agent=personas.owner)
    assert conversation_state(conversation)["survey"] == {"scale": "thumbs", "score": None}
    conversation_rate(conversation=conversation, score=5)
    conversation.refresh_from_db()
    assert conversation_state(conversation)["survey"] == {"scale": "thumbs", "score": 5}


def test_a_visitor_cannot_rate_another_visitors_conversation(personas: Personas) -> None:
    mine = resolved(personas.chatbot, agent=personas.owner)
    theirs = resolved(personas.chatbot, agent=personas.owner)
    with pytest.raises(NotFound):
        widget_rate(visitor=mine.visitor, client_id=None, score=5, conversation=str(theirs.public_id))
    other_bot = resolved(personas.other_chatbot, agent=personas.outsider)
    with pytest.raises(NotFound):
        widget_rate(visitor=mine.visitor, client_id=None, score=5, conversation=str(other_bot.public_id))
    theirs.refresh_from_db()
    assert theirs.rated_at is None and not OutboxEvent.objects.filter(type="conversation.rated").exists()


def test_a_failed_transaction_leaves_no_rating_and_no_outbox_row(personas: Personas) -> None:
    conversation = resolved(personas.chatbot, agent=personas.owner)
    with pytest.raises(RuntimeError), transaction.atomic():
        conversation_rate(conversation=conversation, score=5)
        raise RuntimeError("rolled back")
    conversation.refresh_from_db()
    assert conversation.rated_at is None
    assert not OutboxEvent.objects.filter(type="conversation.rated").exists()


def test_the_outbox_row_is_dispatched_after_commit(personas: Personas, django_capture_on_commit_callbacks) -> None:
    from actions.services import action_create

    action_create(
        workspace=personas.workspace,
        chatbot=personas.chatbot,
        name="Ratings to CRM",
        kind="webhook",
        events=["conversation.rated"],
        url="https://crm.example.com/hook",
    )
    conversation = resolved(personas.chatbot, agent=personas.owner)
    with django_capture_on_commit_callbacks() as callbacks:
        conversation_rate(conversation=conversation, score=5)
        row = OutboxEvent.objects.get(type="conversation.rated")
        assert row.dispatched_at is None  # somebody listens: fanned out once committed
    assert callbacks  # the dispatch enqueue waited for the commit


def test_the_widget_http_endpoint_rates_and_is_rate_limited(personas: Personas, settings: Any) -> None:
    conversation = resolved(personas.chatbot, agent=personas.owner)
    auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {visitor_token(conversation.visitor)}"}
    client = Client()
    body = {"client_id": "c1", "conversation": str(conversation.public_id), "score": 5, "comment": "Great"}
    response = client.post("/api/widget/rate", body, content_type="application/json", **auth)
    assert response.status_code == 200, response.content
    assert response.json()["state"]["survey"] == {"scale": "thumbs", "score": 5}
    again = client.post("/api/widget/rate", {**body, "client_id": "c2"}, content_type="application/json", **auth)
    assert (again.status_code, again.json()["code"]) == (409, "already_rated")
    bad = client.post("/api/widget/rate", {**body, "score": 9}, content_type="application/json", **auth)
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_input")

    settings.RATE_VISITOR_PER_MINUTE = 1
    other = resolved(personas.chatbot, agent=personas.owner)
    auth = {"HTTP_AUTHORIZATION": f"Bearer {visitor_token(other.visitor)}"}
    codes = [
        client.post("/api/widget/rate", {"score": 2, "client_id": f"x{i}"}, content_type="application/json", **auth)
        for i in range(2)
    ]
    assert codes[1].status_code == 429 and codes[1].json()["code"] == "rate_limited"


def test_the_event_catalogue_describes_the_rated_event(personas: Personas) -> None:
    assert EventType.CONVERSATION_RATED.value == "conversation.rated"
    assert EVENT_INFO[EventType.CONVERSATION_RATED][0] == "Conversation rated"
    summary = summarize(sample_payload(event_type="conversation.rated", chatbot=personas.chatbot), is_test=True)
    assert summary.title == "Visitor rated \U0001f44d"
    assert ("Agent", "Test agent") in summary.facts
    assert ("Comment", "Quick and friendly, thanks!") in summary.facts


def test_the_owner_picks_the_survey_on_the_settings_page(personas: Personas) -> None:
    from tests.factories import handoff_settings_form

    client = Client()
    client.force_login(personas.owner)
    html = client.get("/dashboard/settings/").content.decode()
    assert "Ask \u201cHow did we do?\u201d after a conversation is resolved" in html
    assert 'value="thumbs" selected' in html
    chatbot = str(personas.chatbot.pk)
    response = client.post("/dashboard/settings/", handoff_settings_form(chatbot=chatbot, satisfaction_survey="five"))
    assert response.status_code == 302
    personas.chatbot.refresh_from_db()
    assert personas.chatbot.satisfaction_survey == "five"
    client.post("/dashboard/settings/", handoff_settings_form(chatbot=chatbot))  # not posted: kept
    personas.chatbot.refresh_from_db()
    assert personas.chatbot.satisfaction_survey == "five"
    refused = client.post("/dashboard/settings/", handoff_settings_form(chatbot=chatbot, satisfaction_survey="ten"))
    assert refused.status_code == 200
    assert "Choose don&#x27;t ask, thumbs or 1 to 5 stars." in refused.content.decode()
    personas.chatbot.refresh_from_db()
    assert personas.chatbot.satisfaction_survey == "five"
