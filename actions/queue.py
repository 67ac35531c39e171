"""Hand work to Celery only once the transaction that created it has committed.

A broker that is down must never fail (or appear to fail) the committed state change: the error
is logged and the beat sweep picks the row up later.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from django.db import transaction

from pivra.unavailable import is_unavailable

logger = logging.getLogger(__name__)


def _log_failed_enqueue(exc: Exception, message: str, *args: object) -> None:
    """A broker outage is one line (the sweeps send the work once it is back); anything else is a bug."""
    if is_unavailable(exc):
        logger.warning(message + " (broker unavailable: %s)", *args, exc)
    else:
        logger.exception(message, *args)


def enqueue_dispatch_on_commit(event_id: str) -> None:
    def send() -> None:
        from actions.tasks import dispatch_outbox_event

        try:
            dispatch_outbox_event.delay(event_id)
        except Exception as exc:  # the sweep dispatches any event whose task never left
            _log_failed_enqueue(exc, "could not enqueue the dispatch of outbox event %s", event_id)

    transaction.on_commit(send)


def enqueue_attempts_on_commit(delivery_ids: Iterable[int], *, countdown: float | None = None) -> None:
    ids = list(delivery_ids)
    if not ids:
        return

    def send() -> None:
        from actions.tasks import attempt_delivery

        for delivery_id in ids:
            try:
                if countdown is None:
                    attempt_delivery.delay(delivery_id)
                else:
                    attempt_delivery.apply_async((delivery_id,), countdown=countdown)
            except Exception as exc:  # the sweep re-queues any due delivery without a live task
                _log_failed_enqueue(exc, "could not enqueue delivery %s", delivery_id)

    transaction.on_commit(send)
