"""Sending a file in a conversation: checked, stored through Django's storage API, then a message event.

The file is checked and stored before the transaction (storage may be S3: no network I/O while a
conversation's row is locked); the event is appended under the lock by the same services as a text
message — a visitor's like a visitor message (shown to the agent in a live chat), an agent's through
``handoff_reply`` (only the assignee of a live chat). A visitor's file in an AI conversation gets no
AI reply: the AI answers text, and reads the file's message in its history as "[attached an image:
name]" (``conversations.ai``). Should the transaction fail, the stored files are deleted again.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.core.files.base import ContentFile
from django.core.files.uploadedfile import UploadedFile
from django.db import transaction
from django.db.models import Count, Sum
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from attachments.budgets import upload_budget_spend
from attachments.content import check_upload, clean_name
from attachments.models import Attachment
from chatbots.models import Chatbot
from conversations.models import Conversation, Event
from conversations.services import conversation_lock, event_append, event_by_client_id
from handoff.models import Handoff
from handoff.transitions.reply import handoff_reply
from notifications.services import notify_on_commit
from pivra.errors import Conflict, DomainError, Forbidden, NotFound
from pivra.inputs import clean_client_id
from pivra.widget.ratelimit import rate_limit_hit, visitor_action_limits

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class Sent:
    event: Event
    attachment: Attachment | None
    duplicate: bool


def attachment_description(attachment: Attachment) -> dict[str, Any]:
    """What an event's ``data.attachment`` holds (links are added when a frame is rendered)."""
    return {
        "id": str(attachment.public_id),
        "name": attachment.name,
        "content_type": attachment.content_type,
        "size": attachment.size,
        "width": attachment.width,
        "height": attachment.height,
    }


def attachment_send(
    *,
    conversation: Conversation,
    sender: str,
    agent: User | None = None,
    upload: UploadedFile,
    client_id: str,
    ip: str | None = None,
) -> Sent:
    """Store ``upload`` (a checked image or PDF) and append its message event; idempotent per client id
    (a resend is answered with the stored event, stores nothing and costs no budget)."""
    if sender not in (Attachment.Sender.VISITOR, Attachment.Sender.AGENT) or (sender == "agent") != bool(agent):
        raise ValueError("sender is 'visitor' (no agent) or 'agent' (with the agent)")
    client_id = clean_client_id(client_id, required=True) or ""
    stored = _resend(conversation=conversation, client_id=client_id, sender=sender)
    if stored is not None:
        return stored
    if upload.size is not None and upload.size > settings.ATTACHMENT_MAX_BYTES:
        raise file_too_large()
    if not upload.size:
        raise DomainError("empty_file", _("This file is empty."))
    # The cheap refusals first, without a lock (all are checked again under it): decoding an image
    # costs far more than these reads.
    _check_open(conversation=conversation, agent=agent)
    _count_budget(conversation=conversation, sender=sender, agent=agent, ip=ip, size=upload.size)
    _check_quota(conversation=conversation, size=upload.size)
    checked = check_upload(upload)
    if len(checked.data) > settings.ATTACHMENT_MAX_BYTES:  # a re-encoded image can come out larger
        raise file_too_large()
    _check_quota(conversation=conversation, size=len(checked.data))
    name = clean_name(upload.name, content_type=checked.content_type)
    attachment = Attachment(
        conversation=conversation,
        sender=sender,
        agent=agent,
        content_type=checked.content_type,
        size=len(checked.data),
        width=checked.width,
        height=checked.height,
        name=name,
    )
    # upload_to gives each a random name; the sender's name is never part of a storage path.
    _store(attachment.file, "file", ContentFile(checked.data))
    try:
        if checked.thumbnail is not None:
            _store(attachment.thumbnail, "thumb", ContentFile(checked.thumbnail))
        sent = _append(
            conversation=conversation, sender=sender, agent=agent, attachment=attachment, client_id=client_id
        )
    except BaseException:
        attachment_files_delete(names=[attachment.file.name, attachment.thumbnail.name])
        raise
    if sent.duplicate:  # a twin request stored it first: ours is not needed
        attachment_files_delete(names=[attachment.file.name, attachment.thumbnail.name])
    return sent


def file_too_large() -> DomainError:
    limit = settings.ATTACHMENT_MAX_BYTES // (1024 * 1024)
    return DomainError("file_too_large", _("Files can be at most %(limit)s MB.") % {"limit": limit}, status=413)


def _resend(*, conversation: Conversation, client_id: str, sender: str) -> Sent | None:
    existing = event_by_client_id(conversation=conversation, client_id=client_id)
    if existing is None:
        return None
    if existing.kind != "message" or "attachment" not in existing.data or existing.author != sender:
        raise Conflict("client_id_reused", _("This client_id was already used for a different action."))
    return Sent(event=existing, attachment=Attachment.objects.filter(event=existing).first(), duplicate=True)


class StorageUnavailable(DomainError):
    status = 503

    def __init__(self) -> None:
        super().__init__("storage_unavailable", _("File storage is unavailable right now. Try again in a minute."))
        self.retry_after = 60


def storage_failure(exc: BaseException, *, doing: str) -> StorageUnavailable:
    """One log line (the error's type and code, never the storage's settings or credentials)."""
    error = getattr(exc, "response", None)
    code = error.get("Error", {}).get("Code", "") if isinstance(error, dict) else ""
    logger.warning("attachment storage unavailable while %s: %s %s", doing, type(exc).__name__, code)
    return StorageUnavailable()


def _store(field: Any, name: str, content: ContentFile) -> None:
    try:
        field.save(name, content, save=False)
    except Exception as exc:
        raise storage_failure(exc, doing="storing") from None


def _check_open(*, conversation: Conversation, agent: User | None) -> None:
    """The refusals ``_append`` gives under the lock, read without it (a stale read only lets a
    doomed upload through to the locked check)."""
    if agent is None:
        if conversation.status == Conversation.Status.CLOSED:
            raise Conflict(
                "conversation_closed", _("This conversation is resolved. Start a new conversation to keep chatting.")
            )
        return
    handoff = Handoff.objects.filter(conversation=conversation).values("status", "claimed_by_id").first()
    if handoff is None:
        raise NotFound("handoff_not_found", _("No handoff for this conversation in your workspaces."))
    if handoff["status"] == Handoff.Status.RESOLVED or conversation.status == Conversation.Status.CLOSED:
        raise Conflict("handoff_resolved", _("This conversation is resolved: it takes no more replies."))
    if handoff["status"] != Handoff.Status.ACTIVE:
        raise Conflict("not_claimed", _("Claim this conversation before replying."))
    if handoff["claimed_by_id"] != agent.pk:
        raise Forbidden("not_assignee", _("Only the agent who claimed this conversation can send files in it."))


def _count_budget(*, conversation: Conversation, sender: str, agent: User | None, ip: str | None, size: int) -> None:
    """The same per-minute budget as a message (a visitor's actions; an agent's own budget of that size),
    then the uploads' own count and byte budgets (attachments/budgets.py)."""
    if agent is not None:
        rate_limit_hit(bucket=f"attach:u:{agent.pk}", limit=settings.RATE_VISITOR_PER_MINUTE)
        upload_budget_spend(sender_key=f"u:{agent.pk}", ip=ip, size=size)
    else:
        visitor_action_limits(visitor_key=str(conversation.visitor.public_id), ip=ip)
        upload_budget_spend(sender_key=f"v:{conversation.visitor.public_id}", ip=ip, size=size)


def _check_quota(*, conversation: Conversation, size: int) -> None:
    """Room for ``size`` more bytes (and one more file) in the conversation and its workspace."""
    totals = Attachment.objects.filter(conversation=conversation).aggregate(count=Count("id"), size=Sum("size"))
    if totals["count"] >= settings.ATTACHMENTS_PER_CONVERSATION:
        raise DomainError(
            "too_many_attachments",
            ngettext(
                "This conversation already has %(count)d file, the most it can hold.",
                "This conversation already has %(count)d files, the most it can hold.",
                totals["count"],
            )
            % {"count": totals["count"]},
            status=413,
        )
    if (totals["size"] or 0) + size > settings.ATTACHMENT_CONVERSATION_MAX_BYTES:
        limit = settings.ATTACHMENT_CONVERSATION_MAX_BYTES // (1024 * 1024)
        raise DomainError(
            "attachments_quota",
            _("This conversation's files may take %(limit)s MB in all; it is full.") % {"limit": limit},
            status=413,
        )
    workspace_id = Chatbot.objects.filter(pk=conversation.chatbot_id).values("workspace_id")
    used = Attachment.objects.filter(conversation__chatbot__workspace_id__in=workspace_id).aggregate(size=Sum("size"))
    if (used["size"] or 0) + size > settings.ATTACHMENT_WORKSPACE_MAX_BYTES:
        raise DomainError(
            "workspace_attachments_quota",
            _("This workspace's file storage is full. Ask its owner to delete old conversations."),
            status=413,
        )


def _append(
    *, conversation: Conversation, sender: str, agent: User | None, attachment: Attachment, client_id: str
) -> Sent:
    data = {"attachment": attachment_description(attachment)}
    with transaction.atomic():
        locked = conversation_lock(conversation_id=conversation.pk)
        # Under the lock, with this file's size, so two uploads at once cannot both pass the last free place.
        _check_quota(conversation=locked, size=attachment.size)
        if agent is not None:
            received = handoff_reply(
                agent=agent,
                conversation_public_id=str(locked.public_id),
                text=attachment.name,
                client_id=client_id,
                data=data,
            )
            if received.duplicate:
                return Sent(event=received.event, attachment=None, duplicate=True)
            event = received.event
        else:
            twin = _resend(conversation=locked, client_id=client_id, sender=sender)
            if twin is not None:
                return twin
            if locked.status == Conversation.Status.CLOSED:
                raise Conflict(
                    "conversation_closed",
                    _("This conversation is resolved. Start a new conversation to keep chatting."),
                )
            live = locked.status == Conversation.Status.HANDOFF
            event = event_append(
                conversation=locked,
                kind="message",
                author=Event.Author.VISITOR,
                text=attachment.name,
                client_id=client_id,
                data=data,
                notify_console=live,  # in a handoff the agents hear of it like a visitor message
                touch_live_handoff=live,
            )
            if live:  # the agent holding the chat is told like of a typed message (notifications app)
                notify_on_commit(kind="message", conversation_id=locked.pk, ref_id=event.pk)
        attachment.event = event
        attachment.save()
    return Sent(event=event, attachment=attachment, duplicate=False)


def attachment_files_delete(*, names: list[str]) -> None:
    """Delete stored files; a failure is logged, never raised (a leftover file is only storage)."""
    for name in names:
        if not name:
            continue
        try:
            Attachment.file.field.storage.delete(name)
        except Exception:
            logger.exception("could not delete attachment file %s", name)
