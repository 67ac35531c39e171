"""Telling agents: the entry points other apps call, and the fan-out to console sockets and Web Push.

Callers only register work on commit (``notify_on_commit``, ``notify_mention``): the Celery task
``notifications.tasks.agent_notify`` (queue ``celery``, enqueued by name) then reads who is to be
told (``notifications.notices``) and calls ``agent_notify``, which

- sends a ``notify`` frame to each recipient's console sockets (``console-user.<id>``): an open
  dashboard tab shows it as a browser notification when it is hidden (static/console/notifications.js);
- queues one ``notifications.tasks.push_deliver`` per Web Push subscription of each recipient (queue
  ``deliveries``, network-bound); the service worker shows it only when no dashboard tab is open.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from celery import current_app
from django.conf import settings
from django.core.cache import cache
from django.db import transaction
from django.utils import timezone, translation

from accounts.models import AgentProfile
from chatbots.models import Membership
from notifications.models import PushSubscription
from notifications.notices import KINDS, Notice, one_line, open_url
from notifications.webpush import push_payload, push_send
from pivra.console.revocation import console_user_group
from pivra.realtime import send_now_rollback_unsafe
from pivra.unavailable import is_unavailable, log_unavailable

logger = logging.getLogger(__name__)

NOTIFY_TASK = "notifications.tasks.agent_notify"
PUSH_TASK = "notifications.tasks.push_deliver"
NOTIFY_FRAME = "notify"
MESSAGE_PUSH_WINDOW_SECONDS = 20


def notify_on_commit(*, kind: str, conversation_id: int, ref_id: int = 0) -> None:
    """Once the current transaction commits, queue telling whoever is to be told about ``kind``
    (``handoff``: conversation_id's new request; ``message``: visitor message event ``ref_id``;
    ``mention``: note ``ref_id``). A broker out of reach is logged and never fails the request."""
    if kind not in KINDS:
        raise ValueError(f"unknown notice kind {kind!r}")

    def enqueue() -> None:
        try:
            current_app.send_task(NOTIFY_TASK, args=[kind, conversation_id, ref_id], queue="celery")
        except Exception as exc:  # kombu / redis errors of every kind: a notice is not worth a 500
            if is_unavailable(exc):
                log_unavailable("agent notification enqueue", exc)
            else:
                logger.exception("could not queue the %s notice of conversation %s", kind, conversation_id)

    transaction.on_commit(enqueue, robust=True)


def notify_mention(*, note_id: int, conversation_id: int) -> None:
    """For H2's notes: call inside the transaction that stored the note (with its ``mentions``); the
    members mentioned (of the note's workspace, not its author) are told after commit."""
    notify_on_commit(kind="mention", conversation_id=conversation_id, ref_id=note_id)


def agent_notify(
    *,
    user_ids: Iterable[int],
    kind: str,
    workspace_id: int,
    conversation_public_id: str,
    title: str,
    body: str,
    frames: bool = True,
) -> int:
    """Tell those of ``user_ids`` who are active members of ``workspace_id`` now: one ``notify`` frame
    to their console sockets (unless ``frames`` is off) and a Web Push to each of their subscriptions
    (for ``message``, at most one per conversation and agent in ``MESSAGE_PUSH_WINDOW_SECONDS``).
    Returns the pushes queued."""
    # Only active members of the notice's own workspace, whatever the caller passed (one query).
    users = sorted(
        Membership.objects.filter(workspace_id=workspace_id, user__is_active=True, user_id__in=set(user_ids))
        .values_list("user_id", flat=True)
        .distinct()
    )
    title, body = one_line(title, 80), one_line(body, 140)
    url = open_url(conversation_public_id)
    frame = {
        "type": NOTIFY_FRAME,
        "kind": kind,
        "conversation": conversation_public_id,
        "title": title,
        "body": body,
        "url": url,
    }
    if frames and users:
        # One publish for all of them; the console socket adds the workspace, and drops the frame
        # if the user left it meanwhile.
        send_now_rollback_unsafe([console_user_group(user_id) for user_id in users], frame)
    if not settings.WEB_PUSH_ENABLED or not users:
        return 0
    if kind == "message":
        users = [u for u in users if _first_message_push(conversation_public_id=conversation_public_id, user_id=u)]
    payload = push_payload(kind=kind, conversation_public_id=conversation_public_id, title=title, body=body, url=url)
    text = payload.decode()
    subscriptions = list(PushSubscription.objects.filter(user_id__in=users).values_list("pk", "user_id"))
    for subscription_id, user_id in subscriptions:
        current_app.send_task(PUSH_TASK, args=[subscription_id, user_id, workspace_id, kind, text], queue="deliveries")
    return len(subscriptions)


def _first_message_push(*, conversation_public_id: str, user_id: int) -> bool:
    """A chatty visitor is one push per ``MESSAGE_PUSH_WINDOW_SECONDS`` per agent, not one per message
    (the in-page frames stay one per message). Redis ``SET NX`` with a TTL; Redis away: push anyway."""
    key = f"notifications:message-push:{conversation_public_id}:{user_id}"
    try:
        return bool(cache.add(key, 1, timeout=MESSAGE_PUSH_WINDOW_SECONDS))
    except Exception as exc:  # redis errors of every kind: a push too many beats a push missed
        if is_unavailable(exc):
            log_unavailable("message push coalescing", exc)
        else:
            logger.exception("message push coalescing failed")
        return True


def push_subscription_deliver(*, subscription_id: int, user_id: int, workspace_id: int, kind: str, payload: str) -> str:
    """The worker's side of one queued push: only to the subscription still of ``user_id``, whose
    session has not expired, and who is still an active member of the notice's workspace."""
    subscription = PushSubscription.objects.filter(pk=subscription_id, user_id=user_id).first()
    if subscription is None:
        return "gone"  # unsubscribed, deleted or taken by another browser's user since it was queued
    expires = subscription.session_expires_at
    if expires is not None and expires <= timezone.now():
        PushSubscription.objects.filter(pk=subscription.pk).delete()
        return "expired"
    if not Membership.objects.filter(workspace_id=workspace_id, user_id=user_id, user__is_active=True).exists():
        return "not_member"
    return push_send(subscription=subscription, payload=payload.encode(), kind=kind)


def recipients_by_language(user_ids: Iterable[int]) -> dict[str, list[int]]:
    """``user_ids`` grouped by the console language each agent chose (accounts.AgentProfile; one
    query). An agent who follows the browser gets ``settings.LANGUAGE_CODE``: a push or a notice
    worded on the server has no browser to ask."""
    ids = sorted(set(user_ids))
    offered = dict(settings.LANGUAGES)
    chosen = dict(AgentProfile.objects.filter(user_id__in=ids).exclude(language="").values_list("user_id", "language"))
    groups: dict[str, list[int]] = {}
    for user_id in ids:
        language = chosen.get(user_id, "")
        groups.setdefault(language if language in offered else settings.LANGUAGE_CODE, []).append(user_id)
    return groups


def notice_deliver(*, notice: Notice) -> int:
    """Each recipient is told in their own language: one wording (and one fan-out) per language."""
    queued = 0
    for language, user_ids in recipients_by_language(notice.user_ids).items():
        with translation.override(language):
            title, body = notice.wording()
        queued += agent_notify(
            user_ids=user_ids,
            kind=notice.kind,
            workspace_id=notice.workspace_id,
            conversation_public_id=notice.conversation_public_id,
            title=title,
            body=body,
            # A mention's page notice is the note's own ``note.mention`` frame (conversations/notes.py).
            frames=notice.kind != "mention",
        )
    return queued
