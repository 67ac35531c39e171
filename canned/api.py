"""The console API of canned replies: a conversation's workspace's replies, filled for it.

The composer's "/" list reads this. Each reply comes with its placeholders already filled for the
conversation and the agent asking (``canned.placeholders``), so the page only inserts text.
Session-authenticated and scoped to the agent's workspaces; mounted under /api/console/."""

from __future__ import annotations

from typing import Annotated, Any

from django.contrib.auth.models import User
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Path, Router, Schema
from ninja.security import django_auth

from canned.placeholders import canned_fill_report, placeholder_values
from canned.selectors import CANNED_REPLIES_MAX, canned_replies_for_workspace
from conversations.models import Conversation
from pivra.api_schema import UUID, error_responses
from pivra.errors import NotFound
from pivra.ids import parse_uuid

router = Router(tags=["console"], auth=django_auth)
ERRORS = error_responses()
ConversationId = Annotated[str, Path(pattern=UUID)]


class CannedReplyOut(Schema):
    id: int
    shortcut: str
    title: str
    text: str
    missing: list[str]
    gap_at: int | None


@router.get(
    "/conversations/{conversation_id}/canned-replies",
    response={200: list[CannedReplyOut], **ERRORS},
    summary="The workspace's canned replies, placeholders filled for this conversation",
    description="`text` has every `{{visitor.name}}`-style placeholder replaced by this conversation's "
    "value for it (empty when there is none). Insert it as plain text. `missing` names the placeholders "
    "that had no value here (e.g. `visitor.name`: the composer warns the agent to check the text) and "
    "`gap_at` is where in `text` the first of them left its gap (null when none did). At most "
    f"{CANNED_REPLIES_MAX} replies (a workspace's cap).",
)
def canned_replies(request: HttpRequest, conversation_id: ConversationId) -> list[dict[str, Any]]:
    agent: User = request.auth  # type: ignore[attr-defined]
    key = parse_uuid(conversation_id)
    conversation = (
        Conversation.objects.select_related("chatbot__workspace")
        .filter(public_id=key, chatbot__workspace__memberships__user_id=agent.pk)
        .first()
        if key
        else None
    )
    if conversation is None:
        raise NotFound("conversation_not_found", _("No such conversation in your workspaces."))
    values = placeholder_values(conversation=conversation, agent=agent)
    replies = canned_replies_for_workspace(workspace_id=conversation.chatbot.workspace_id)[:CANNED_REPLIES_MAX]
    answer = []
    for reply in replies:
        filled = canned_fill_report(text=reply.text, values=values)
        answer.append(
            {
                "id": reply.pk,
                "shortcut": reply.shortcut,
                "title": reply.title,
                "text": filled.text,
                "missing": filled.missing,
                "gap_at": filled.gap_at,
            }
        )
    return answer
