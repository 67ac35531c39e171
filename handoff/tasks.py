from __future__ import annotations

from celery import shared_task

from handoff.pushes import conversation_pushes_repair
from handoff.services import handoff_expire, handoff_expire_overdue


@shared_task(acks_late=True, ignore_result=True)
def expire_handoff(handoff_id: int) -> None:
    handoff_expire(handoff_id=handoff_id)


@shared_task(acks_late=True, ignore_result=True)
def sweep_overdue_handoffs() -> int:
    return handoff_expire_overdue()


@shared_task(ignore_result=True)
def repair_lost_pushes() -> int:
    return conversation_pushes_repair()
