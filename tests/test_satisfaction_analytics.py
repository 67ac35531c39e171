"""The Analytics page's satisfaction figures on a known dataset: AI only vs. handled by a person, per
agent, the period and the workspace respected, in two queries."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from chatbots.models import Chatbot
from conversations.models import Conversation
from handoff.ratings import conversation_rate
from pivra.console.satisfaction import satisfaction_stats
from tests.factories import Personas
from tests.test_ratings import resolved

pytestmark = pytest.mark.django_db


def _rate(bot: Chatbot, score: int, *, agent: Any, claim: bool = True) -> Conversation:
    conversation = resolved(bot, agent=agent, claim=claim)
    conversation_rate(conversation=conversation, score=score)
    return conversation


@pytest.fixture
def dataset(personas: Personas) -> Personas:
    for bot in (personas.chatbot, personas.other_chatbot):
        Chatbot.objects.filter(pk=bot.pk).update(satisfaction_survey="five")
        bot.refresh_from_db()
    personas.owner.first_name = "Alice"
    personas.owner.save()
    personas.teammate.first_name = "Bob"
    personas.teammate.save()
    # AI only (resolved without anyone claiming it): 5 and 1.
    _rate(personas.chatbot, 5, agent=personas.owner, claim=False)
    _rate(personas.chatbot, 1, agent=personas.teammate, claim=False)
    # Alice: 4, 5, 2; Bob: 3.
    for score in (4, 5, 2):
        _rate(personas.chatbot, score, agent=personas.owner)
    _rate(personas.chatbot, 3, agent=personas.teammate)
    # Outside the period, and another workspace's: neither counts.
    old = _rate(personas.chatbot, 1, agent=personas.owner)
    Conversation.objects.filter(pk=old.pk).update(rated_at=timezone.now() - timedelta(days=40))
    _rate(personas.other_chatbot, 1, agent=personas.outsider)
    # Resolved but not rated: not counted either.
    resolved(personas.chatbot, agent=personas.owner)
    return personas


def test_the_figures_split_ai_only_from_handled_by_a_person_and_per_agent(
    dataset: Personas, django_assert_num_queries: Any
) -> None:
    now = timezone.now()
    with django_assert_num_queries(2):
        stats = satisfaction_stats(workspace_id=dataset.workspace.pk, start=now - timedelta(days=30), end=now)
    assert (stats.ai_only.rated, stats.ai_only.positive, stats.ai_only.average) == (2, 1, 3.0)
    assert (stats.person.rated, stats.person.positive, stats.person.average) == (4, 2, 3.5)
    assert (stats.overall.rated, stats.overall.positive) == (6, 3)
    assert stats.overall.average_text == "3.3"
    assert [(a.label, a.rated, a.positive, a.average_text) for a in stats.agents] == [
        ("Alice", 3, 2, "3.7"),
        ("Bob", 1, 0, "3.0"),
    ]


def test_the_analytics_page_shows_them(dataset: Personas) -> None:
    client = Client()
    client.force_login(dataset.teammate)
    html = client.get("/dashboard/analytics/").content.decode()
    assert "Satisfaction" in html
    assert '<tr data-satisfaction="ai_only"><th scope="row">AI only</th><td data-cell="rated">2</td>' in html
    assert '<td data-cell="positive">50%</td><td data-cell="average">3.0</td>' in html
    assert '<tr data-satisfaction="person"><th scope="row">Handled by a person</th><td data-cell="rated">4</td>' in html
    assert '<th scope="row">Alice</th><td data-cell="rated">3</td><td data-cell="positive">66.7%</td>' in html


def test_an_empty_period_says_so(personas: Personas) -> None:
    client = Client()
    client.force_login(personas.owner)
    html = client.get("/dashboard/analytics/?days=7").content.decode()
    assert "No ratings in the last 7 days." in html
