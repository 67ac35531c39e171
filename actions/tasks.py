"""Celery tasks: thin wrappers over the delivery services. Late acks and reject-on-worker-lost mean
a killed worker's task goes back to the broker; the guarded claims make a redelivered task safe."""

from __future__ import annotations

from celery import shared_task

from actions.deliveries import actions_sweep, delivery_attempt, outbox_event_dispatch
from actions.services import action_notify_paused


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def dispatch_outbox_event(event_id: str) -> None:
    outbox_event_dispatch(event_id=event_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def attempt_delivery(delivery_id: int) -> None:
    delivery_attempt(delivery_id=delivery_id)


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def sweep_deliveries() -> dict[str, int]:
    return actions_sweep()


@shared_task(acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def notify_action_paused(action_id: int) -> None:
    action_notify_paused(action_id=action_id)
