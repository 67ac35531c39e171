"""The plan catalogue: features and limits of each plan, used by the data migration and by tests."""

from __future__ import annotations

from enum import StrEnum
from typing import Any


class Feature(StrEnum):
    HANDOFF = "handoff"
    ACTIONS = "actions"
    EXPORT = "export"
    ANALYTICS = "analytics"
    LLM = "llm"


class Limit(StrEnum):
    CHATBOTS = "chatbots"
    AGENTS = "agents"
    KNOWLEDGE_ENTRIES = "knowledge_entries"


FREE_PLAN_CODE = "free"

DEFAULT_PLANS: list[dict[str, Any]] = [
    {
        "code": "free",
        "name": "Free",
        "position": 0,
        "price_monthly_cents": 0,
        "features": {
            Feature.HANDOFF: False,
            Feature.ACTIONS: False,
            Feature.EXPORT: True,
            Feature.ANALYTICS: False,
            Feature.LLM: False,
        },
        "limits": {Limit.CHATBOTS: 1, Limit.AGENTS: 1, Limit.KNOWLEDGE_ENTRIES: 50},
    },
    {
        "code": "starter",
        "name": "Starter",
        "position": 1,
        "price_monthly_cents": 1900,
        "features": {
            Feature.HANDOFF: True,
            Feature.ACTIONS: True,
            Feature.EXPORT: True,
            Feature.ANALYTICS: True,
            Feature.LLM: True,
        },
        "limits": {Limit.CHATBOTS: 3, Limit.AGENTS: 3, Limit.KNOWLEDGE_ENTRIES: 500},
    },
    {
        "code": "pro",
        "name": "Pro",
        "position": 2,
        "price_monthly_cents": 4900,
        "features": {
            Feature.HANDOFF: True,
            Feature.ACTIONS: True,
            Feature.EXPORT: True,
            Feature.ANALYTICS: True,
            Feature.LLM: True,
        },
        "limits": {Limit.CHATBOTS: 10, Limit.AGENTS: 10, Limit.KNOWLEDGE_ENTRIES: 5000},
    },
    {
        "code": "business",
        "name": "Business",
        "position": 3,
        "price_monthly_cents": 14900,
        "features": {
            Feature.HANDOFF: True,
            Feature.ACTIONS: True,
            Feature.EXPORT: True,
            Feature.ANALYTICS: True,
            Feature.LLM: True,
        },
        "limits": {Limit.CHATBOTS: 50, Limit.AGENTS: 100, Limit.KNOWLEDGE_ENTRIES: 50000},
    },
]


def upsert_default_plans(plan_model: Any) -> list[Any]:
    """Create or refresh the catalogue's plans on ``plan_model`` (the real or the migration model)."""
    plans = []
    for spec in DEFAULT_PLANS:
        plan, _ = plan_model.objects.update_or_create(
            code=spec["code"],
            defaults={
                "name": spec["name"],
                "position": spec["position"],
                "price_monthly_cents": spec["price_monthly_cents"],
                "features": {str(k): v for k, v in spec["features"].items()},
                "limits": {str(k): v for k, v in spec["limits"].items()},
            },
        )
        plans.append(plan)
    return plans
