"""Upload and download of attachments (plain views: a multipart body and a file stream, which the
JSON API does not carry). Thin: they authenticate, then call ``attachments.services``.

- ``POST /api/widget/attachments`` — the visitor (``Authorization: Bearer <token>``), multipart
  ``client_id`` + ``file``, into their current conversation.
- ``POST /api/console/conversations/<id>/attachments`` — the assignee (session + ``X-CSRFToken``).
- ``GET /api/attachments/<id>/<file|thumb>?sig=…`` — a signed, expiring link AND the conversation's
  visitor (Bearer token) or a member of its workspace (session); anyone else gets 404. The file is
  streamed in 64 KB chunks (never read whole into memory) within an hourly byte budget.

Every refusal is JSON ``{code, detail}``: a wrong method (405), a malformed multipart body (400), a
storage outage (503 ``storage_unavailable`` with ``Retry-After``).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from typing import IO, Any

from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import RequestDataTooBig, TooManyFieldsSent, TooManyFilesSent
from django.http import HttpRequest, HttpResponse, JsonResponse, StreamingHttpResponse
from django.http.multipartparser import MultiPartParserError
from django.http.response import HttpResponseBase
from django.utils.http import content_disposition_header
from django.utils.translation import gettext as _
from django.views.decorators.csrf import csrf_exempt
from ninja.utils import check_csrf

from attachments.budgets import download_budget_spend
from attachments.content import EXTENSIONS, sniff
from attachments.models import Attachment
from attachments.services import Sent, attachment_send, file_too_large, storage_failure
from attachments.uploads import upload_too_large
from chatbots.models import Membership
from conversations.frames import event_frame
from conversations.models import Conversation, Visitor
from handoff.state import visitor_current_conversation
from pivra.attachment_links import LinkRefused, attachment_link_check
from pivra.errors import DomainError
from pivra.ids import parse_uuid
from pivra.widget.tokens import visitor_from_token

logger = logging.getLogger(__name__)
CHUNK = 64 * 1024


def _error(exc: DomainError) -> JsonResponse:
    response = JsonResponse(exc.as_dict(), status=exc.status)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


def _refused(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"code": code, "detail": detail}, status=status)


def _wrong_method(request: HttpRequest, allowed: str) -> JsonResponse | None:
    if request.method == allowed:
        return None
    response = _refused(405, "method_not_allowed", f"Use {allowed} here.")
    response["Allow"] = allowed
    return response


def _bearer_visitor(request: HttpRequest) -> Visitor | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        return None
    return visitor_from_token(token.strip())


def _parsed(request: HttpRequest) -> JsonResponse | None:
    """Parse the multipart body now, so a malformed or oversized one is a JSON refusal, not a 400 page.
    (pivra.middleware's input check usually reads the form first and answers ``invalid_input`` itself;
    this holds wherever that middleware is not in front.)"""
    try:
        request.POST, request.FILES  # noqa: B018  (parsing is lazy: this is the parse)
    except RequestDataTooBig:
        return _refused(413, "request_too_large", "This request is too large.")
    except (MultiPartParserError, TooManyFilesSent, TooManyFieldsSent):
        return _refused(400, "invalid_upload", "Send one file in a multipart/form-data body.")
    return None


def _upload(request: HttpRequest) -> tuple[Any, str]:
    """(the uploaded file, client_id) of a multipart body; DomainError when it has none."""
    if upload_too_large(request):
        raise file_too_large()
    upload = request.FILES.get("file")
    if upload is None and int(request.META.get("CONTENT_LENGTH") or 0) > settings.DATA_UPLOAD_MAX_MEMORY_SIZE:
        # Form fields past Django's limit (RequestDataTooBig, met first by the input middleware,
        # which leaves the form empty): a file is never counted there, so this was no upload.
        raise DomainError("request_too_large", _("This request is too large."), status=413)
    if upload is None:
        raise DomainError("no_file", _("Attach a file in the 'file' field of a multipart/form-data body."))
    return upload, request.POST.get("client_id", "")


def _ack(sent: Sent, conversation: Conversation, *, team: bool) -> dict[str, Any]:
    frame = event_frame(sent.event, conversation, team=team)
    return {"client_id": sent.event.client_id, "seq": sent.event.seq, "duplicate": sent.duplicate, "event": frame}


@csrf_exempt  # token-authenticated, no cookie: nothing for a forged cross-site form to ride on
def widget_upload(request: HttpRequest) -> HttpResponse:
    if (wrong := _wrong_method(request, "POST")) is not None:
        return wrong
    visitor = _bearer_visitor(request)
    if visitor is None:
        return _refused(401, "not_authenticated", "Send a valid visitor token.")
    if (bad := _parsed(request)) is not None:
        return bad
    try:
        upload, client_id = _upload(request)
        conversation = visitor_current_conversation(visitor=visitor)
        conversation.visitor = visitor
        sent = attachment_send(
            conversation=conversation,
            sender=Attachment.Sender.VISITOR,
            upload=upload,
            client_id=client_id,
            ip=request.META.get("REMOTE_ADDR"),
        )
    except DomainError as exc:
        return _error(exc)
    return JsonResponse(_ack(sent, conversation, team=False))


@csrf_exempt  # checked below, answered as the console API answers it
def console_upload(request: HttpRequest, conversation_id: str) -> HttpResponse:
    if (wrong := _wrong_method(request, "POST")) is not None:
        return wrong
    if not request.user.is_authenticated:
        return _refused(401, "not_authenticated", "Log in or send valid credentials.")
    if (bad := _parsed(request)) is not None:  # the CSRF check reads the form too
        return bad
    if check_csrf(request) is not None:
        return _refused(403, "csrf_failed", "Send the csrftoken cookie's value in the X-CSRFToken header.")
    user: User = request.user
    key = parse_uuid(conversation_id)
    workspaces = Membership.objects.filter(user=user).values("workspace_id")
    conversation = (
        Conversation.objects.select_related("chatbot", "visitor")
        .filter(public_id=key, chatbot__workspace_id__in=workspaces)
        .first()
        if key
        else None
    )
    if conversation is None:
        return _refused(404, "conversation_not_found", "No such conversation in your workspaces.")
    try:
        upload, client_id = _upload(request)
        sent = attachment_send(
            conversation=conversation,
            sender=Attachment.Sender.AGENT,
            agent=user,
            upload=upload,
            client_id=client_id,
            ip=request.META.get("REMOTE_ADDR"),
        )
    except DomainError as exc:
        return _error(exc)
    return JsonResponse(_ack(sent, conversation, team=True), status=201)


# A PDF never renders on our origin (always a download); every answer is sandboxed anyway, so
# even a file a browser decided to render could run nothing here.
_SANDBOX = "sandbox; default-src 'none'; img-src 'self' data: blob:; style-src 'unsafe-inline'"


def download(request: HttpRequest, attachment_id: str, variant: str) -> HttpResponseBase:
    if (wrong := _wrong_method(request, "GET")) is not None:
        return wrong
    key = parse_uuid(attachment_id)
    if key is None or variant not in ("file", "thumb"):
        return _refused(404, "attachment_not_found", "No such file.")
    try:
        attachment_link_check(attachment_id=str(key), variant=variant, signature=request.GET.get("sig", ""))
    except LinkRefused as exc:
        return _refused(403, exc.code, exc.detail)
    attachment = Attachment.objects.select_related("conversation__chatbot").filter(public_id=key).first()
    reader = _reader(request, attachment.conversation) if attachment is not None else None
    if attachment is None or reader is None:
        # Another visitor, another workspace's agent: as if it did not exist, even with a valid link.
        return _refused(404, "attachment_not_found", "No such file.")
    stored = attachment.thumbnail if variant == "thumb" else attachment.file
    if not stored.name:
        return _refused(404, "attachment_not_found", "No such file.")
    try:
        handle, content_type, size = _open(stored, attachment=attachment, variant=variant)
    except FileNotFoundError:  # gone from storage (deleted by hand, a lost bucket)
        return _refused(404, "attachment_not_found", "This file is no longer available.")
    except DomainError as exc:
        return _error(exc)
    try:
        download_budget_spend(reader_key=reader, ip=request.META.get("REMOTE_ADDR"), size=size)
    except DomainError as exc:
        handle.close()
        return _error(exc)
    response = StreamingHttpResponse(_chunks(handle), content_type=content_type)
    response["Content-Length"] = str(size)
    is_pdf = content_type == "application/pdf"
    disposition = content_disposition_header(is_pdf, _download_name(attachment, variant, content_type))
    if disposition:
        response["Content-Disposition"] = disposition
    response["X-Content-Type-Options"] = "nosniff"
    response["Content-Security-Policy"] = _SANDBOX
    response["Cross-Origin-Resource-Policy"] = "same-origin"
    response["Cache-Control"] = "private, max-age=600"
    response["Vary"] = "Authorization, Cookie"
    return response


def _open(stored: Any, *, attachment: Attachment, variant: str) -> tuple[IO[bytes], str, int]:
    """(an open handle, its content type, its size); FileNotFoundError when it is gone, 503 when the
    storage fails otherwise (the handle is closed on every failure)."""
    try:
        handle = stored.storage.open(stored.name, "rb")
    except FileNotFoundError:
        raise
    except Exception as exc:
        raise storage_failure(exc, doing="opening") from None
    try:
        content_type = attachment.content_type
        if variant == "thumb":
            content_type, _ = sniff(handle.read(16))
            handle.seek(0)
        size = attachment.size if variant == "file" else int(handle.size)
    except DomainError:  # not an image we wrote: treat as gone
        handle.close()
        raise FileNotFoundError(stored.name) from None
    except FileNotFoundError:
        handle.close()
        raise
    except Exception as exc:
        handle.close()
        raise storage_failure(exc, doing="reading") from None
    return handle, content_type, size


async def _chunks(handle: IO[bytes]) -> AsyncIterator[bytes]:
    """The file in 64 KB chunks, each read off the event loop (an S3 read is network I/O)."""
    read = sync_to_async(handle.read, thread_sensitive=False)
    try:
        while chunk := await read(CHUNK):
            yield chunk
    except Exception as exc:  # the headers are sent: all that is left is to stop and say why in the log
        storage_failure(exc, doing="streaming")
    finally:
        await sync_to_async(handle.close, thread_sensitive=False)()


def _download_name(attachment: Attachment, variant: str, content_type: str) -> str:
    if variant == "file":
        return attachment.name
    stem = attachment.name.rsplit(".", 1)[0] or "attachment"
    return f"thumbnail-{stem}.{EXTENSIONS.get(content_type, 'bin')}"


def _reader(request: HttpRequest, conversation: Conversation) -> str | None:
    """Who may read the conversation's files, as a budget key ("v:<visitor>" / "u:<user>"), or None."""
    visitor = _bearer_visitor(request)
    if visitor is not None and visitor.pk == conversation.visitor_id:
        return f"v:{visitor.public_id}"
    user = request.user
    if (
        user.is_authenticated
        and Membership.objects.filter(user=user, workspace_id=conversation.chatbot.workspace_id).exists()
    ):
        return f"u:{user.pk}"
    return None
