"""The Celery app: handoff timers and sweeps, AI replies and outbox deliveries, each on its own queue."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signature

from pivra import broker_compat

broker_compat.install()  # a worker survives a Redis restart with tasks in flight (see the module)
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pivra.settings")

app = Celery("pivra")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


@app.on_configure.connect
def _check_configuration(sender: Celery, **kwargs: Any) -> None:
    """A worker or beat with a bad ``PIVRA_*`` variable stops with one line, not a traceback.

    Run when Celery first reads its configuration rather than at import: ``pivra/__init__`` imports
    this module, and ``python -m pivra.stack`` must not load settings before it has started the
    database and set the environment."""
    from pivra.bootstrap import configure_or_exit

    configure_or_exit()


@app.on_after_configure.connect
def _periodic_tasks(sender: Celery, **kwargs: Any) -> None:
    """The sweeps that heal what a dead or late worker missed. Each entry expires before its next
    run, so a backlog after an outage never piles up."""
    from django.conf import settings

    every = settings.HANDOFF_SWEEP_SECONDS
    sender.add_periodic_task(
        every, signature("handoff.tasks.sweep_overdue_handoffs"), name="handoff-sweep", expires=every
    )
    sender.add_periodic_task(every, signature("handoff.tasks.repair_lost_pushes"), name="push-repair", expires=every)
    # Live chats whose agent left go back to the queue; live chats silent past the idle limit are resolved.
    sender.add_periodic_task(every, signature("handoff.tasks.sweep_idle_handoffs"), name="idle-sweep", expires=every)
    # Transfer and round-robin offers nobody accepted in time go back to the queue (or to the next agent).
    sender.add_periodic_task(every, signature("handoff.tasks.sweep_expired_offers"), name="offer-sweep", expires=every)
    # Half the grace period: a message whose task was lost is queued again at most 1.5 graces after it was stored.
    unanswered = max(1.0, settings.AI_UNANSWERED_GRACE_SECONDS / 2)
    sender.add_periodic_task(
        unanswered,
        signature("conversations.tasks.sweep_unanswered_messages"),
        name="ai-unanswered-sweep",
        expires=unanswered,
    )
    sweep = settings.DELIVERY_SWEEP_SECONDS
    sender.add_periodic_task(
        sweep, signature("actions.tasks.sweep_deliveries"), name="actions-delivery-sweep", expires=sweep
    )
    # Members whose last console socket closed past the grace period are announced Offline this late at most.
    presence = settings.PRESENCE_SWEEP_SECONDS
    sender.add_periodic_task(
        presence, signature("chatbots.tasks.sweep_presence"), name="presence-sweep", expires=presence
    )
    # Digests of capped notifications go out within half a minute of their window's end.
    sender.add_periodic_task(
        30.0, signature("actions.tasks.send_notification_digests"), name="actions-notify-digests", expires=30.0
    )
