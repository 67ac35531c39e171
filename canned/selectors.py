"""Reads of canned replies, always inside one workspace."""

from __future__ import annotations

from django.db.models import QuerySet

from canned.models import CannedReply

# Replies a workspace may hold (the composer's "/" list reads them all at each opening).
CANNED_REPLIES_MAX = 500


def canned_replies_for_workspace(*, workspace_id: int) -> QuerySet[CannedReply]:
    return CannedReply.objects.filter(workspace_id=workspace_id).order_by("shortcut")


def canned_reply_for_workspace(*, workspace_id: int, reply_id: int) -> CannedReply | None:
    """The reply when it belongs to this workspace; another workspace's is None (a 404)."""
    return CannedReply.objects.filter(workspace_id=workspace_id, pk=reply_id).first()
