"""The one place that answers "may this workspace use feature X now?"."""

from __future__ import annotations

from datetime import datetime

from django.utils import timezone

from chatbots.models import Plan, Subscription, Workspace
from chatbots.plans import FREE_PLAN_CODE, Feature, Limit

_LIVE_STATUSES = (Subscription.Status.ACTIVE, Subscription.Status.TRIALING)


def workspace_effective_plan(*, workspace: Workspace, now: datetime | None = None) -> Plan | None:
    """The plan in force: the subscription's while it is live, otherwise the Free plan."""
    now = now or timezone.now()
    subscription = Subscription.objects.select_related("plan").filter(workspace=workspace).first()
    if (
        subscription is not None
        and subscription.status in _LIVE_STATUSES
        and (subscription.current_period_end is None or subscription.current_period_end > now)
    ):
        return subscription.plan
    return Plan.objects.filter(code=FREE_PLAN_CODE).first()


def workspace_has_feature(*, workspace: Workspace, feature: Feature, now: datetime | None = None) -> bool:
    """True when the plan in force includes ``feature``; a lapsed subscription falls back to Free."""
    plan = workspace_effective_plan(workspace=workspace, now=now)
    return bool(plan and plan.features.get(str(feature), False))


def workspace_limit(*, workspace: Workspace, limit: Limit, now: datetime | None = None) -> int:
    plan = workspace_effective_plan(workspace=workspace, now=now)
    if plan is None:
        return 0
    return int(plan.limits.get(str(limit), 0))
