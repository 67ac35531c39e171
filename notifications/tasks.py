"""Celery tasks: thin wrappers over the notification services. ``agent_notify`` (queue ``celery``)
reads who is to be told and tells their console sockets at once; ``push_deliver`` (queue
``deliveries``, routed in settings) talks to a push service, so it never waits in front of a timer.
A redelivered copy sends again: harmless, the browser replaces a notification with the same tag."""

from __future__ import annotations

from celery import shared_task

from notifications.notices import notice_build
from notifications.services import notice_deliver, push_subscription_deliver


@shared_task(name="notifications.tasks.agent_notify", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def agent_notify(kind: str, conversation_id: int, ref_id: int) -> int:
    notice = notice_build(kind=kind, conversation_id=conversation_id, ref_id=ref_id)
    return 0 if notice is None else notice_deliver(notice=notice)


@shared_task(name="notifications.tasks.push_deliver", acks_late=True, reject_on_worker_lost=True, ignore_result=True)
def push_deliver(subscription_id: int, user_id: int, workspace_id: int, kind: str, payload: str) -> str:
    return push_subscription_deliver(
        subscription_id=subscription_id, user_id=user_id, workspace_id=workspace_id, kind=kind, payload=payload
    )
