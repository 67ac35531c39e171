"""Deliveries: fan-out from the outbox, attempts, retries, manual redelivery and the sweep.

State machine of a ``Delivery``::

    pending ──claim──▶ sending ──2xx──▶ succeeded
       ▲                  │ ├──failure, attempts left──▶ pending (next_attempt_at = backoff)
       │                  │ └──410 / attempts used up──▶ failed
       └─ lease expired ──┘   (worker died: another worker takes it over, same webhook-id)

Each attempt is claimed by one guarded UPDATE (``… WHERE status='pending' AND next_attempt_at <=
now``), so two workers holding the same task never send the same attempt. No network I/O happens
inside a transaction: claim (commit) → send → record (commit).
"""

from __future__ import annotations

import logging
import secrets
from datetime import datetime, timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import F, Q
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from actions.caps import (
    HeldBack,
    digest_payload,
    notification_admit,
    notification_digest_release,
    notification_digest_settle,
    notification_digests_claim,
)
from actions.events import DIGEST_TYPE
from actions.models import Action, Delivery, DeliveryAttempt, OutboxEvent
from actions.queue import enqueue_attempts_on_commit
from actions.services import action_pause, action_signing_secrets
from actions.transports import AttemptResult, send_email, send_slack, send_webhook
from chatbots.features import workspace_has_feature
from chatbots.models import Chatbot
from chatbots.plans import Feature
from pivra.crypto import secret_unreadable
from pivra.errors import Conflict

logger = logging.getLogger(__name__)

# Seconds to wait after failed attempt 1, 2, …: about 21 hours over 8 attempts, ±20 % jitter.
RETRY_SCHEDULE: tuple[int, ...] = (30, 120, 600, 1800, 7200, 21600, 43200)
MAX_ATTEMPTS = len(RETRY_SCHEDULE) + 1
JITTER = 0.2
FAILING_PAUSE_AFTER = timedelta(hours=24)
# An outbox row younger than this is left to its on-commit task before the sweep steps in.
DISPATCH_GRACE = timedelta(seconds=2)
INTERRUPTED_ERROR = "The worker stopped before this attempt finished."
PAUSED_ERROR = "Not sent: the action was paused."
_random = secrets.SystemRandom()


def lease_duration() -> timedelta:
    """How long a claimed attempt may stay in flight before it is presumed lost: the hard HTTP
    deadline plus room for DNS and the database."""
    return timedelta(seconds=float(settings.WEBHOOK_TIMEOUT) + 20)


def _countdown_limit() -> float:
    # A Redis ETA longer than the visibility timeout is redelivered in a loop: long waits are the
    # sweep's job, short ones get a timed task.
    visibility = settings.CELERY_BROKER_TRANSPORT_OPTIONS.get("visibility_timeout", 300)
    return float(visibility) / 2


def retry_delay(*, attempt: int, retry_after: float | None = None) -> float:
    """Seconds before the next try after failed attempt number ``attempt`` (1-based): the schedule
    with jitter, and never sooner than the receiver's ``Retry-After``."""
    base = RETRY_SCHEDULE[min(max(attempt, 1), len(RETRY_SCHEDULE)) - 1]
    delay = base * _random.uniform(1 - JITTER, 1 + JITTER)
    if retry_after is not None:
        delay = max(delay, retry_after)
    return delay


# --- fan-out ----------------------------------------------------------------------------------


def outbox_event_dispatch(*, event_id: str, now: datetime | None = None) -> list[int]:
    """Fan one outbox event out to a delivery per matching active action. Exactly once per event:
    the guarded update on ``dispatched_at`` decides, and the unique (action, event) pair backs it."""
    now = now or timezone.now()
    with transaction.atomic():
        if not OutboxEvent.objects.filter(pk=event_id, dispatched_at__isnull=True).update(dispatched_at=now):
            return []
        event = OutboxEvent.objects.get(pk=event_id)
        if event.chatbot_id is None:
            return []
        actions = [
            action
            for action in Action.objects.select_related("workspace").filter(
                workspace_id=event.workspace_id, chatbot_id=event.chatbot_id, status=Action.Status.ACTIVE
            )
            if event.type in action.events
        ]
        if actions and not workspace_has_feature(workspace=actions[0].workspace, feature=Feature.ACTIONS):
            actions = []  # the plan lapsed: actions stay configured but nothing is sent
        if actions and not notification_admit(chatbot_id=event.chatbot_id, event_type=event.type, now=now):
            actions = []  # past the chatbot's cap for this window: summed up in its digest instead
        deliveries = Delivery.objects.bulk_create(
            [
                Delivery(
                    action=action,
                    event=event,
                    event_type=event.type,
                    webhook_id=f"msg_{event.pk.hex}",
                    max_attempts=MAX_ATTEMPTS,
                    next_attempt_at=now,
                    enqueued_at=now,
                )
                for action in actions
            ]
        )
        ids = [d.pk for d in deliveries]
        enqueue_attempts_on_commit(ids)
    return ids


def notification_digests_send(*, now: datetime | None = None) -> list[int]:
    """One digest delivery per subscribed action for every capped window that has ended (the
    notifications held back by ``notification_admit``); returns the new deliveries' ids."""
    now = now or timezone.now()
    ids: list[int] = []
    for held in notification_digests_claim(now=now):
        try:
            ids += _digest_deliveries(held, now=now)
        except Exception:  # one window that cannot be summed up must not hold back the others
            logger.exception("the digest of %s could not be created; it is tried again on the next run", held)
            notification_digest_release(held=held)
    return ids


def _digest_deliveries(held: HeldBack, *, now: datetime) -> list[int]:
    chatbot = Chatbot.objects.select_related("workspace").filter(pk=held.chatbot_id).first()
    if chatbot is None or not workspace_has_feature(workspace=chatbot.workspace, feature=Feature.ACTIONS):
        notification_digest_settle(held=held)  # nobody left to tell
        return []
    payload = digest_payload(chatbot=chatbot, held=held, now=now)
    webhook_id = f"msg_{held.digest_id.hex}"
    with transaction.atomic():
        # A retry (a settle lost after the commit) finds this window's digest already there.
        done = set(
            Delivery.objects.filter(event_type=DIGEST_TYPE, webhook_id=webhook_id).values_list("action_id", flat=True)
        )
        actions = [
            action
            for action in Action.objects.filter(chatbot=chatbot, status=Action.Status.ACTIVE)
            if held.event_type in action.events and action.pk not in done
        ]
        # A digest sums many outbox rows and has none of its own: its payload travels with the
        # delivery (as a test delivery's does), which is sent and retried like any other.
        deliveries = Delivery.objects.bulk_create(
            [
                Delivery(
                    action=action,
                    event=None,
                    event_type=DIGEST_TYPE,  # the log says what was sent: a digest, not one event
                    test_payload=payload,
                    webhook_id=webhook_id,
                    max_attempts=MAX_ATTEMPTS,
                    next_attempt_at=now,
                    enqueued_at=now,
                )
                for action in actions
            ]
        )
        ids = [delivery.pk for delivery in deliveries]
        enqueue_attempts_on_commit(ids)
        # The window leaves the due set only once its deliveries are stored.
        transaction.on_commit(lambda: notification_digest_settle(held=held), robust=True)
    return ids


# --- one attempt ------------------------------------------------------------------------------


def delivery_attempt(*, delivery_id: int) -> DeliveryAttempt | None:
    """Make the next attempt of a delivery if it is due (or its previous worker died). Of any
    number of workers holding a task for it, exactly one sends; the others return None."""
    claimed = _claim(delivery_id)
    if claimed is None:
        return None
    delivery, attempt = claimed
    _release_connection()
    result = _send(delivery)
    return _record(delivery, attempt, result)


def _release_connection() -> None:
    """Hand the pooled database connection back before waiting on a receiver: the delivery worker
    runs many threads against a small pool, and a thread holding a connection through a 10 s wait
    would starve its siblings. (Inside a transaction — tests wrap each test in one — it stays.)"""
    if not connection.in_atomic_block:
        connection.close()


def _claim(delivery_id: int) -> tuple[Delivery, DeliveryAttempt] | None:
    now = timezone.now()
    delivery = Delivery.objects.select_related("action").filter(pk=delivery_id).first()
    if delivery is None:
        return None
    if not delivery.is_test and not delivery.action.is_active:
        closed = Q(status=Delivery.Status.PENDING) | Q(status=Delivery.Status.SENDING, lease_expires_at__lte=now)
        with transaction.atomic():
            if Delivery.objects.filter(closed, pk=delivery_id).update(
                status=Delivery.Status.FAILED,
                next_attempt_at=None,
                lease_expires_at=None,
                last_error=PAUSED_ERROR,
                updated_at=now,
            ):
                _close_interrupted(delivery_ids=[delivery_id], now=now)
        return None
    due = Q(status=Delivery.Status.PENDING, next_attempt_at__lte=now) | Q(
        status=Delivery.Status.SENDING, lease_expires_at__lte=now, attempts__lt=F("max_attempts")
    )
    with transaction.atomic():
        won = Delivery.objects.filter(due, pk=delivery_id).update(
            status=Delivery.Status.SENDING,
            attempts=F("attempts") + 1,
            lease_expires_at=now + lease_duration(),
            last_attempt_at=now,
            next_attempt_at=None,
            enqueued_at=None,
            updated_at=now,
        )
        if not won:
            return None
        # The event too: the payload is read while sending, after the connection is released.
        delivery = Delivery.objects.select_related("action", "event").get(pk=delivery_id)
        _close_interrupted(delivery_ids=[delivery.pk], now=now)
        attempt = DeliveryAttempt.objects.create(delivery=delivery, number=delivery.attempts, started_at=now)
    return delivery, attempt


def _close_interrupted(*, delivery_ids: list[int], now: datetime) -> None:
    DeliveryAttempt.objects.filter(delivery_id__in=delivery_ids, outcome=DeliveryAttempt.Outcome.SENDING).update(
        outcome=DeliveryAttempt.Outcome.INTERRUPTED, finished_at=now, error=INTERRUPTED_ERROR
    )


SECRET_UNREADABLE_ERROR = (
    "The saved URL or signing secret cannot be decrypted (the encryption key changed): "
    "the operator must restore the old key, or edit the action and rotate its secret."
)


def _chatbot_language(chatbot_id: int | None) -> str:
    """The language notifications about a chatbot are worded in: its default_language (settings.LANGUAGE_CODE
    for none)."""
    if chatbot_id is None:
        return settings.LANGUAGE_CODE
    language = Chatbot.objects.filter(pk=chatbot_id).values_list("default_language", flat=True).first()
    return language or settings.LANGUAGE_CODE


def _send(delivery: Delivery) -> AttemptResult:
    action = delivery.action
    payload: dict[str, Any] = delivery.payload
    if any(secret_unreadable(value) for value in (action.url, action.secret, action.previous_secret)):
        # Never send unsigned or to an empty URL; retrying cannot help until someone acts.
        logger.error("delivery %s: action %s has an undecryptable URL or secret", delivery.pk, action.pk)
        return AttemptResult(False, 0, error=SECRET_UNREADABLE_ERROR, permanent=True)
    try:
        if action.kind == Action.Kind.WEBHOOK:  # data for machines: no language
            return send_webhook(
                url=action.url,
                payload=payload,
                msg_id=delivery.webhook_id,
                secrets=action_signing_secrets(action=action),
            )
        # Slack and email go to the addresses the workspace configured, not to one agent with a chosen
        # language: they are worded in the chatbot's default language (Chatbot.default_language).
        with translation.override(_chatbot_language(action.chatbot_id)):
            if action.kind == Action.Kind.SLACK:
                return send_slack(url=action.url, payload=payload, is_test=delivery.is_test)
            return send_email(recipients=list(action.recipients), payload=payload, is_test=delivery.is_test)
    except Exception:  # a bug in a transport must end as a logged failure, never a row stuck in flight
        logger.exception("delivery %s: the transport raised", delivery.pk)
        return AttemptResult(False, 0, error="internal error while sending")


def _record(delivery: Delivery, attempt: DeliveryAttempt, result: AttemptResult) -> DeliveryAttempt:
    now = timezone.now()
    retry_at: datetime | None = None
    countdown: float | None = None
    fields: dict[str, Any] = {
        "last_status_code": result.status_code,
        "last_duration_ms": result.duration_ms,
        "last_error": result.error[:500],
        "lease_expires_at": None,
        "updated_at": now,
    }
    if result.succeeded:
        fields.update(status=Delivery.Status.SUCCEEDED, delivered_at=now)
    elif result.gone or result.permanent or attempt.number >= delivery.max_attempts:
        fields.update(status=Delivery.Status.FAILED)
    else:
        delay = retry_delay(attempt=attempt.number, retry_after=result.retry_after)
        retry_at = now + timedelta(seconds=delay)
        countdown = delay if delay <= _countdown_limit() else None
        # enqueued_at = the due time: the sweep steps in only if that task has not run by then.
        fields.update(
            status=Delivery.Status.PENDING, next_attempt_at=retry_at, enqueued_at=retry_at if countdown else None
        )
    with transaction.atomic():
        # Still ours? If the lease ran out and another worker took over, only the log row is ours.
        ours = Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.SENDING, attempts=attempt.number).update(
            **fields
        )
        attempt.outcome = DeliveryAttempt.Outcome.SUCCEEDED if result.succeeded else DeliveryAttempt.Outcome.FAILED
        attempt.finished_at = now
        attempt.duration_ms = result.duration_ms
        attempt.status_code = result.status_code
        attempt.error = result.error[:500]
        attempt.response_excerpt = result.response_excerpt[:2000]
        attempt.next_retry_at = retry_at if ours else None
        attempt.save()
        if ours:
            if retry_at is not None and countdown is not None:
                enqueue_attempts_on_commit([delivery.pk], countdown=countdown)
            _action_health(delivery, result, now)
    return attempt


def _action_health(delivery: Delivery, result: AttemptResult, now: datetime) -> None:
    """410 pauses the action; a success clears its failure streak; failing for a day pauses it."""
    action = delivery.action
    if result.gone:
        action_pause(
            action=action,
            reason="The receiver answered HTTP 410 Gone: it retired this endpoint.",
            notify_owners=True,
            now=now,
        )
        return
    if delivery.is_test:
        return
    if result.succeeded:
        Action.objects.filter(pk=action.pk).update(failing_since=None, last_success_at=now)
        return
    Action.objects.filter(pk=action.pk, failing_since__isnull=True).update(failing_since=now)
    since = Action.objects.filter(pk=action.pk).values_list("failing_since", flat=True).first()
    if since is not None and now - since >= FAILING_PAUSE_AFTER:
        _pause_failing(action, now)


def _pause_failing(action: Action, now: datetime) -> bool:
    # action_pause is won by one caller only, so the owners are mailed once however many workers
    # and sweeps notice the same streak.
    return action_pause(
        action=action,
        reason="Every delivery failed for 24 hours, so Pivra paused this action.",
        notify_owners=True,
        now=now,
    )


# --- manual redelivery ------------------------------------------------------------------------


def delivery_redeliver(*, delivery: Delivery, now: datetime | None = None) -> Delivery:
    """Send a delivery again now with the same webhook-id: one more attempt for a finished
    delivery, or an immediate retry for a queued one."""
    now = now or timezone.now()
    action = delivery.action
    if not delivery.is_test and not action.is_active:
        raise Conflict("action_paused", _("Resume the action before sending its deliveries again."))
    with transaction.atomic():
        won = Delivery.objects.filter(
            pk=delivery.pk, status__in=(Delivery.Status.FAILED, Delivery.Status.SUCCEEDED)
        ).update(
            status=Delivery.Status.PENDING,
            max_attempts=F("attempts") + 1,
            next_attempt_at=now,
            enqueued_at=now,
            updated_at=now,
        ) or Delivery.objects.filter(pk=delivery.pk, status=Delivery.Status.PENDING).update(
            next_attempt_at=now, enqueued_at=now, updated_at=now
        )
        if not won:
            raise Conflict("in_flight", _("This delivery is being sent right now."))
        enqueue_attempts_on_commit([delivery.pk])
    delivery.refresh_from_db()
    return delivery


# --- the sweep --------------------------------------------------------------------------------


def actions_sweep(*, now: datetime | None = None, limit: int = 500) -> dict[str, int]:
    """Heal what a dead worker or broker missed: dispatch outbox rows whose task was lost, fail
    deliveries lost on their last attempt, re-queue every delivery that is due (or stuck in
    flight past its lease) and has no recent task, and pause actions failing for a day."""
    now = now or timezone.now()
    # The streak is checked here as well as after each attempt: one event's retries end after
    # about 21 hours, so an action whose only delivery failed would otherwise never reach 24.
    failing = Action.objects.filter(status=Action.Status.ACTIVE, failing_since__lte=now - FAILING_PAUSE_AFTER).order_by(
        "failing_since"
    )[:limit]
    paused = sum(_pause_failing(action, now) for action in failing)
    missed = list(
        OutboxEvent.objects.filter(dispatched_at__isnull=True, created_at__lte=now - DISPATCH_GRACE)
        .order_by("created_at")
        .values_list("pk", flat=True)[:limit]
    )
    for event_id in missed:
        outbox_event_dispatch(event_id=str(event_id), now=now)

    with transaction.atomic():
        lost = list(
            Delivery.objects.filter(
                status=Delivery.Status.SENDING, lease_expires_at__lte=now, attempts__gte=F("max_attempts")
            ).values_list("pk", flat=True)[:limit]
        )
        if lost:
            Delivery.objects.filter(pk__in=lost, status=Delivery.Status.SENDING).update(
                status=Delivery.Status.FAILED, lease_expires_at=None, last_error=INTERRUPTED_ERROR, updated_at=now
            )
            _close_interrupted(delivery_ids=lost, now=now)

    stale = now - lease_duration()
    due = (
        Q(status=Delivery.Status.PENDING, next_attempt_at__lte=now)
        | Q(status=Delivery.Status.SENDING, lease_expires_at__lte=now)
    ) & (Q(enqueued_at__isnull=True) | Q(enqueued_at__lte=stale))
    with transaction.atomic():
        ids = list(
            Delivery.objects.select_for_update(skip_locked=True)
            .filter(due)
            .order_by("next_attempt_at")
            .values_list("pk", flat=True)[:limit]
        )
        Delivery.objects.filter(pk__in=ids).update(enqueued_at=now)
        enqueue_attempts_on_commit(ids)
    return {"dispatched": len(missed), "failed_lost": len(lost), "requeued": len(ids), "paused": paused}
