"""The Celery app: handoff timers, outbox deliveries and AI replies run here."""

from __future__ import annotations

import os
from typing import Any

from celery import Celery, signature

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pivra.settings")

app = Celery("pivra")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()


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
    sweep = settings.DELIVERY_SWEEP_SECONDS
    sender.add_periodic_task(
        sweep, signature("actions.tasks.sweep_deliveries"), name="actions-delivery-sweep", expires=sweep
    )
