"""Rating rules added after review: who "handled" a rated conversation (an agent's message, its
last author), what can no longer be rated, strict scores, and requests that never create or read
anything once over budget."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from actions.models import OutboxEvent
from chatbots.models import Chatbot
from conversations.models import Conversation
from conversations.services import visitor_create
from handoff.models import Handoff
from handoff.ratings import conversation_rate
from handoff.transitions.claim import handoff_claim
from handoff.transitions.release import handoff_release
from handoff.transitions.reply import handoff_reply
from handoff.transitions.resolve import handoff_resolve
from pivra.console.satisfaction import satisfaction_stats
from pivra.errors import DomainError
from pivra.widget.ratelimit import RateLimited
from pivra.widget.survey import widget_rate, widget_transcript
from pivra.widget.tokens import visitor_token
from tests.factories import Personas
from tests.test_actions_support import escalate
from tests.test_ratings import resolved

pytestmark = pytest.mark.django_db


def _code(call: Any) -> str:
    with pytest.raises(DomainError) as refused:
        call()
    return refused.value.code


def test_a_claim_without_an_agent_message_is_no_person_and_a_requeued_chat_is_the_last_writers(
    personas: Personas,
) -> None:
    personas.owner.first_name, personas.teammate.first_name = "Alice", "Bob"
    personas.owner.save()
    personas.teammate.save()
    silent = resolved(personas.chatbot, agent=personas.owner, reply=False)  # claimed, never wrote
    conversation_rate(conversation=silent, score=5)
    [row] = OutboxEvent.objects.filter(type="conversation.rated")
    assert (row.payload["data"]["handled_by_person"], row.payload["data"]["agent"]) == (False, None)

    passed_on = escalate(personas.chatbot).conversation
    key = str(passed_on.public_id)
    handoff_claim(agent=personas.owner, conversation_public_id=key)
    handoff_reply(agent=personas.owner, conversation_public_id=key, text="Let me ask Bob", client_id="a-1")
    handoff_release(agent=personas.owner, conversation_public_id=key)
    handoff_claim(agent=personas.teammate, conversation_public_id=key)
    handoff_reply(agent=personas.teammate, conversation_public_id=key, text="Sorted", client_id="b-1")
    handoff_resolve(agent=personas.teammate, conversation_public_id=key)
    passed_on.refresh_from_db()
    conversation_rate(conversation=passed_on, score=1)
    row = OutboxEvent.objects.filter(type="conversation.rated").latest("created_at")
    assert row.payload["data"]["agent"] == {"id": personas.teammate.pk, "name": "Bob"}

    superseded = resolved(personas.chatbot, agent=personas.owner)
    Conversation.objects.filter(pk=superseded.pk).update(rating=1, rated_at=timezone.now())
    Handoff.objects.filter(conversation=superseded).update(resolve_reason="superseded")

    now = timezone.now()
    stats = satisfaction_stats(workspace_id=personas.workspace.pk, start=now - timedelta(days=1), end=now)
    assert (stats.ai_only.rated, stats.person.rated, stats.overall.rated) == (1, 1, 2)
    assert [(a.label, a.rated) for a in stats.agents] == [("Bob", 1)]


def test_a_conversation_closed_over_a_week_ago_or_superseded_is_not_rateable(personas: Personas) -> None:
    old = resolved(personas.chatbot, agent=personas.owner)
    Conversation.objects.filter(pk=old.pk).update(closed_at=timezone.now() - timedelta(days=8))
    old.refresh_from_db()
    assert _code(lambda: conversation_rate(conversation=old, score=5)) == "not_rateable"
    superseded = resolved(personas.chatbot, agent=personas.owner)
    Handoff.objects.filter(conversation=superseded).update(resolve_reason="superseded")
    assert _code(lambda: conversation_rate(conversation=superseded, score=5)) == "not_rateable"


def test_scores_are_strict_integers_and_long_comments_have_their_own_code(personas: Personas) -> None:
    Chatbot.objects.filter(pk=personas.chatbot.pk).update(satisfaction_survey="five")
    conversation = resolved(personas.chatbot, agent=personas.owner)
    auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {visitor_token(conversation.visitor)}"}
    key = str(conversation.public_id)
    for score in (True, "5"):
        body = {"conversation": key, "score": score}
        response = Client().post("/api/widget/rate", body, content_type="application/json", **auth)
        assert response.status_code == 422, score
    long = {"conversation": key, "score": 4, "comment": "x" * 1001}
    response = Client().post("/api/widget/rate", long, content_type="application/json", **auth)
    assert (response.status_code, response.json()["code"]) == (422, "comment_too_long")


def test_requests_without_a_conversation_create_none_and_over_budget_ones_read_nothing(
    personas: Personas, settings: Any, django_assert_num_queries: Any
) -> None:
    visitor = visitor_create(chatbot=personas.chatbot, locale="en", page="https://shop.example.com/")
    before = Conversation.objects.count()
    assert _code(lambda: widget_rate(visitor=visitor, client_id=None, score=5)) == "conversation_not_found"
    assert _code(lambda: widget_transcript(visitor=visitor, client_id=None, email="v@example.com")) == (
        "conversation_not_found"
    )
    assert Conversation.objects.count() == before
    settings.RATE_VISITOR_PER_MINUTE = 0
    with django_assert_num_queries(0), pytest.raises(RateLimited):
        widget_rate(visitor=visitor, client_id=None, score=5)
    with django_assert_num_queries(0), pytest.raises(RateLimited):
        widget_transcript(visitor=visitor, client_id=None, email="v@example.com")


def test_the_owner_turns_visitor_transcripts_off_next_to_the_survey(personas: Personas) -> None:
    from tests.factories import handoff_settings_form

    client = Client()
    client.force_login(personas.owner)
    html = client.get("/dashboard/settings/").content.decode()
    assert html.index("Ask \u201cHow did we do?\u201d") < html.index("Let visitors email themselves the transcript")
    assert personas.chatbot.transcript_emails is True
    frame_url = f"/widget/frame/{personas.chatbot.public_key}/?origin=http://testserver"
    assert '"transcriptEmails": true' in Client().get(frame_url).content.decode()
    chatbot = str(personas.chatbot.pk)
    assert client.post("/dashboard/settings/", handoff_settings_form(chatbot=chatbot)).status_code == 302  # unchecked
    personas.chatbot.refresh_from_db()
    assert personas.chatbot.transcript_emails is False
    assert '"transcriptEmails": false' in Client().get(frame_url).content.decode()  # the widget hides the form
    client.post("/dashboard/settings/", handoff_settings_form(chatbot=chatbot, transcript_emails="on"))
    personas.chatbot.refresh_from_db()
    assert personas.chatbot.transcript_emails is True
