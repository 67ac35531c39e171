from __future__ import annotations

from datetime import timedelta

import pytest
from django.utils import timezone

from chatbots.features import workspace_has_feature
from chatbots.models import Chatbot, Membership, Plan, Subscription
from chatbots.plans import Feature
from chatbots.services import (
    chatbot_update_handoff_settings,
    membership_add,
    normalize_origin,
    subscription_set,
)
from pivra.errors import DomainError
from tests.factories import Personas, make_user, make_workspace

pytestmark = pytest.mark.django_db


def test_the_data_migration_creates_the_four_plans_with_handoff_from_starter() -> None:
    plans = {p.code: p for p in Plan.objects.all()}
    assert list(plans) == ["free", "starter", "pro", "business"]
    assert plans["free"].features["handoff"] is False
    assert all(plans[code].features["handoff"] is True for code in ("starter", "pro", "business"))


def test_handoff_is_a_starter_feature_and_lapses_with_the_subscription() -> None:
    workspace = make_workspace(plan="starter")
    assert workspace_has_feature(workspace=workspace, feature=Feature.HANDOFF)

    subscription_set(workspace=workspace, plan_code="free")
    assert not workspace_has_feature(workspace=workspace, feature=Feature.HANDOFF)

    yesterday = timezone.now() - timedelta(days=1)
    subscription_set(workspace=workspace, plan_code="pro", current_period_end=yesterday)
    assert not workspace_has_feature(workspace=workspace, feature=Feature.HANDOFF)

    subscription_set(workspace=workspace, plan_code="pro", status=Subscription.Status.CANCELED)
    assert not workspace_has_feature(workspace=workspace, feature=Feature.HANDOFF)

    subscription_set(workspace=workspace, plan_code="business", status=Subscription.Status.TRIALING)
    assert workspace_has_feature(workspace=workspace, feature=Feature.HANDOFF)


def test_a_new_chatbot_has_the_briefs_handoff_defaults(personas: Personas) -> None:
    bot = personas.chatbot
    assert bot.handoff_enabled is False
    assert bot.handoff_keywords == []
    assert bot.handoff_waiting_message == "Connecting you with the team now…"
    assert bot.handoff_timeout_seconds == 180
    assert bot.handoff_busy_message == "Our team is currently busy…"
    assert bot.public_key.startswith("pk_") and len(bot.public_key) > 20


def _save_handoff(bot: Chatbot, **overrides: object) -> Chatbot:
    values: dict[str, object] = {
        "enabled": True,
        "keywords": ["speak to someone"],
        "waiting_message": bot.handoff_waiting_message,
        "timeout_seconds": 180,
        "busy_message": bot.handoff_busy_message,
    }
    values.update(overrides)
    return chatbot_update_handoff_settings(chatbot=bot, **values)  # type: ignore[arg-type]


def test_the_free_plan_cannot_enable_handoff(personas: Personas) -> None:
    subscription_set(workspace=personas.workspace, plan_code="free")
    with pytest.raises(DomainError) as error:
        _save_handoff(personas.chatbot)
    assert error.value.code == "plan_required"
    personas.chatbot.refresh_from_db()
    assert personas.chatbot.handoff_enabled is False


def test_handoff_settings_are_validated_and_keywords_cleaned(personas: Personas) -> None:
    with pytest.raises(DomainError, match="between 5 and 86400"):
        _save_handoff(personas.chatbot, timeout_seconds=2)
    bot = _save_handoff(personas.chatbot, keywords=["  Speak   to someone ", "speak to someone", "", "agent"])
    assert bot.handoff_keywords == ["Speak to someone", "agent"]


def test_seats_are_limited_by_the_plan() -> None:
    workspace = make_workspace(plan="free")  # one seat: the owner
    with pytest.raises(DomainError, match=r"^The Free plan allows 1 team member; upgrade to add more\.$"):
        membership_add(workspace=workspace, user=make_user(), role=Membership.Role.AGENT)


@pytest.mark.parametrize(
    ("value", "expected"),
    [("https://Example.com/", "https://example.com"), ("http://localhost:8000", "http://localhost:8000")],
)
def test_origins_are_normalised(value: str, expected: str) -> None:
    assert normalize_origin(value) == expected


@pytest.mark.parametrize("value", ["example.com", "javascript:alert(1)", "https://example.com/path", "ftp://x.org"])
def test_bad_origins_are_refused(value: str) -> None:
    with pytest.raises(DomainError):
        normalize_origin(value)
