from __future__ import annotations

import logging
from typing import Any

from celery import shared_task
from celery.signals import worker_ready

from handoff.pushes import conversation_pushes_repair
from handoff.queue_position import queue_positions_announce_task
from handoff.transitions.idle import handoff_idle_sweep
from handoff.transitions.offers import handoff_offers_expire
from handoff.transitions.timers import handoff_expire, handoff_expire_overdue, handoff_timers_rearm

log = logging.getLogger(__name__)
TIMER_QUEUE = "celery"  # where expire_handoff is routed (the default queue)


@shared_task(acks_late=True, ignore_result=True)
def expire_handoff(handoff_id: int) -> None:
    handoff_expire(handoff_id=handoff_id)


@shared_task(acks_late=True, ignore_result=True)
def sweep_overdue_handoffs() -> int:
    return handoff_expire_overdue()


@shared_task(acks_late=True, ignore_result=True)
def sweep_expired_offers() -> int:
    return handoff_offers_expire()


@shared_task(acks_late=True, ignore_result=True)
def sweep_idle_handoffs() -> None:
    requeued, resolved = handoff_idle_sweep()
    if requeued or resolved:
        log.info("idle sweep: %d stranded live chats requeued, %d idle ones resolved", requeued, resolved)


@shared_task(ignore_result=True)
def announce_queue_positions(workspace_id: int, trailing: bool = False) -> int:
    # Enqueued by name (handoff.queue_position.ANNOUNCE_TASK), coalesced to one a second per workspace.
    return queue_positions_announce_task(workspace_id=workspace_id, trailing=trailing)


@shared_task(ignore_result=True)
def repair_lost_pushes() -> int:
    return conversation_pushes_repair()


@worker_ready.connect
def rearm_handoff_timers(sender: Any = None, **kwargs: Any) -> None:
    """A worker that consumes the timers' queue re-arms them as it starts (see handoff_timers_rearm)."""
    consumer = getattr(sender, "task_consumer", None)
    queues = {queue.name for queue in getattr(consumer, "queues", None) or ()}
    if queues and TIMER_QUEUE not in queues:
        return  # the deliveries worker
    armed = handoff_timers_rearm()
    if armed:
        log.info("re-armed %d handoff timers", armed)
