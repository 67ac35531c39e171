"""The Celery app: handoff timers, outbox deliveries and AI replies run here."""

from __future__ import annotations

import os

from celery import Celery

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pivra.settings")

app = Celery("pivra")
app.config_from_object("django.conf:settings", namespace="CELERY")
app.autodiscover_tasks()

# Every beat entry expires before its next run, so a backlog after an outage never piles up.
app.conf.beat_schedule = {}


def add_periodic(name: str, task: str, *, every_seconds: float) -> None:
    """Register a beat entry; apps call this from their AppConfig.ready()."""
    app.conf.beat_schedule[name] = {
        "task": task,
        "schedule": every_seconds,
        "options": {"expires": every_seconds},
    }
