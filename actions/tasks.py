"""Celery tasks: thin wrappers over the delivery services. Late acks and reject-on-worker-lost mean
a killed worker's task goes back to the broker; the guarded claims make a redelivered task safe.

``attempt_delivery`` and ``notify_action_paused`` talk to other people's servers, so settings
route them to the ``deliveries`` queue and its own worker (see ``CELERY_TASK_ROUTES``)."""

from __future__ import annotations

import smtplib

from celery import shared_task
from django.conf import settings

from actions.deliveries import actions_sweep, delivery_attempt, notification_digests_send, outbox_event_dispatch
from actions.services import action_notify_paused

# A retry waiting longer than the broker's visibility timeout is handed out again by Redis while
# the first copy still waits, which would mail the owners twice: keep every wait well below it.
_NOTIFY_BACKOFF_MAX = min(300, int(settings.CELERY_BROKER_TRANSPORT_OPTIONS["visibility_timeout"]) // 2)


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
def send_notification_digests() -> int:
    return len(notification_digests_send())


# The owners' only word that an action stopped: a mail server that is down or refuses for a while
# must delay this email, never lose it (an exception alone would ack the task and drop it).
@shared_task(
    acks_late=True,
    reject_on_worker_lost=True,
    ignore_result=True,
    autoretry_for=(smtplib.SMTPException, OSError),
    retry_backoff=2,
    retry_backoff_max=_NOTIFY_BACKOFF_MAX,
    retry_jitter=True,
    max_retries=20,
)
def notify_action_paused(action_id: int) -> None:
    action_notify_paused(action_id=action_id)
