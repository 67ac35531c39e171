"""Signed, expiring links to a message's attachment, made when a frame or page is rendered.

Events store only the attachment's id and description (``data.attachment``); a link is added each
time the event is shown, so none outlives ``PIVRA_ATTACHMENT_LINK_SECONDS``. A link is no credential
on its own: the download also wants the conversation's visitor (their token) or a member of its
workspace (their session) — see ``attachments.views``. Here in the project package because the
frames (``conversations``) add links and the download view (``attachments``) checks them, and
``conversations`` never imports ``attachments``.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from django.core import signing
from django.utils.translation import gettext as _

_SALT = "pivra.attachments.link"
VARIANTS = ("file", "thumb")


def _signer() -> signing.TimestampSigner:
    return signing.TimestampSigner(salt=_SALT)


def _value(attachment_id: str, variant: str) -> str:
    return f"{attachment_id}.{variant}"


def attachment_signature(*, attachment_id: str, variant: str) -> str:
    """The ``sig`` of a link: ``<timestamp>:<signature>`` over the attachment's id and variant."""
    value = _value(attachment_id, variant)
    return _signer().sign(value)[len(value) + 1 :]


def attachment_url(*, attachment_id: str, variant: str) -> str:
    signature = attachment_signature(attachment_id=attachment_id, variant=variant)
    return f"/api/attachments/{attachment_id}/{variant}?sig={signature}"


class LinkRefused(Exception):
    def __init__(self, code: str, detail: str) -> None:
        super().__init__(detail)
        self.code, self.detail = code, detail


def attachment_link_check(*, attachment_id: str, variant: str, signature: str) -> None:
    """Raise LinkRefused unless ``signature`` was made for this attachment and variant within the link lifetime."""
    try:
        _signer().unsign(f"{_value(attachment_id, variant)}:{signature}", max_age=settings.ATTACHMENT_LINK_SECONDS)
    except signing.SignatureExpired:
        raise LinkRefused(
            "link_expired", "This link has expired. Reopen the conversation to get a fresh one."
        ) from None
    except signing.BadSignature:
        raise LinkRefused("invalid_link", "This link is not valid.") from None


def with_links(attachment: dict[str, Any]) -> dict[str, Any]:
    """A frame's copy of ``data.attachment`` with fresh links (``thumb_url`` null when there is no thumbnail)."""
    attachment_id = str(attachment.get("id", ""))
    has_thumb = str(attachment.get("content_type", "")).startswith("image/")
    return {
        **attachment,
        "url": attachment_url(attachment_id=attachment_id, variant="file"),
        "thumb_url": attachment_url(attachment_id=attachment_id, variant="thumb") if has_thumb else None,
    }


def attachment_label(data: dict[str, Any]) -> str | None:
    """A plain-text line for an event's attachment ("📎 photo.png (12 KB)"), or None without one:
    for transcripts and other places where a link would expire or need the reader's identity."""
    attachment = data.get("attachment") if isinstance(data, dict) else None
    if not isinstance(attachment, dict):
        return None
    name = attachment.get("name") or _("attachment")
    return f"📎 {name} ({human_size(int(attachment.get('size') or 0))})"


def human_size(size: int) -> str:
    # Translators: file sizes; the number comes already formatted.
    if size < 1024:
        return _("%(size)s B") % {"size": size}
    if size < 1024 * 1024:
        return _("%(size)s KB") % {"size": f"{size / 1024:.0f}"}
    return _("%(size)s MB") % {"size": f"{size / (1024 * 1024):.1f}"}
