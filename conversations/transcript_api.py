"""The console API's "Email transcript": any member of the conversation's workspace sends its
transcript to the lead's address or one they type. Session-authenticated (CSRF-checked) and scoped to
the agent's workspaces; mounted under /api/console/."""

from __future__ import annotations

from typing import Annotated, Any

from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Path, Router, Schema
from ninja.security import django_auth
from pydantic import Field

from conversations.models import Conversation
from conversations.transcript_send import EMAIL_MAX, EMAIL_PATTERN, transcript_request
from pivra.api_schema import UUID, ApiSchema, error_responses
from pivra.errors import NotFound
from pivra.ids import parse_uuid

router = Router(tags=["console"], auth=django_auth)
ERRORS = error_responses(429)
ConversationId = Annotated[str, Path(pattern=UUID)]


class TranscriptIn(ApiSchema):
    email: str = Field(
        max_length=EMAIL_MAX, pattern=EMAIL_PATTERN, description="The recipient; invalid → 422 invalid_email."
    )


class TranscriptOut(Schema):
    email: str


def member_conversation(*, user_id: int, public_id: str) -> Conversation:
    """The conversation when the user is a member of its workspace; anyone else's is not found."""
    key = parse_uuid(public_id)
    conversation = (
        Conversation.objects.select_related("chatbot")
        .filter(public_id=key, chatbot__workspace__memberships__user_id=user_id)
        .first()
        if key
        else None
    )
    if conversation is None:
        raise NotFound("conversation_not_found", _("No such conversation in your workspaces."))
    return conversation


@router.post(
    "/conversations/{conversation_id}/transcript",
    response={200: TranscriptOut, **ERRORS},
    summary="Email the conversation's transcript (HTML + text; internal notes never included)",
)
def send_transcript(request: HttpRequest, conversation_id: ConversationId, payload: TranscriptIn) -> dict[str, Any]:
    user = request.auth  # type: ignore[attr-defined]
    conversation = member_conversation(user_id=user.pk, public_id=conversation_id)
    address = transcript_request(
        conversation=conversation, email=payload.email, by="agent", user_id=user.pk, ip=request.META.get("REMOTE_ADDR")
    )
    return {"email": address}
