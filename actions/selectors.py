"""Reads for the console, always scoped to one workspace."""

from __future__ import annotations

from datetime import timedelta

from django.db.models import Count, Max, Q, QuerySet
from django.utils import timezone

from actions.models import Action, Delivery


def actions_for_workspace(*, workspace_id: int) -> QuerySet[Action]:
    """Each action with its last-24-hours delivery counts (test sends excluded)."""
    since = timezone.now() - timedelta(hours=24)
    real = Q(deliveries__is_test=False, deliveries__created_at__gte=since)
    return (
        Action.objects.filter(workspace_id=workspace_id)
        .select_related("chatbot")
        .annotate(
            delivered_24h=Count("deliveries", filter=real & Q(deliveries__status=Delivery.Status.SUCCEEDED)),
            failed_24h=Count("deliveries", filter=real & Q(deliveries__status=Delivery.Status.FAILED)),
            retrying_24h=Count(
                "deliveries",
                filter=real & Q(deliveries__status__in=(Delivery.Status.PENDING, Delivery.Status.SENDING)),
            ),
            last_attempt_at=Max("deliveries__last_attempt_at"),
        )
        .order_by("chatbot__name", "name", "id")
    )


def action_for_workspace(*, workspace_id: int, action_id: int) -> Action | None:
    return (
        Action.objects.select_related("chatbot", "workspace", "created_by")
        .filter(workspace_id=workspace_id, pk=action_id)
        .first()
    )


def deliveries_for_action(*, action: Action) -> QuerySet[Delivery]:
    return Delivery.objects.filter(action=action).order_by("-created_at", "-id")


def delivery_for_action(*, action: Action, delivery_id: int) -> Delivery | None:
    return Delivery.objects.select_related("event", "action").filter(action=action, pk=delivery_id).first()
