"""Periodic work of this app: the presence sweep (dead console leases, departures announced)."""

from __future__ import annotations

from celery import shared_task

from chatbots.availability import presence_sweep


@shared_task(ignore_result=True)
def sweep_presence() -> int:
    return presence_sweep()
