"""HTTP twins of the socket frames ``rate``, ``transcript`` and ``end_chat`` (SSE fallback)."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from ninja import Router, Schema
from pydantic import Field

from conversations.transcript_send import EMAIL_MAX, EMAIL_PATTERN
from handoff.ratings import RATING_COMMENT_MAX
from pivra.api_schema import UUID_OR_EMPTY, ApiSchema, client_id_field, error_responses
from pivra.widget import survey
from pivra.widget.api import AckStateOut, VisitorToken
from pivra.widget.frames import Score

router = Router(tags=["widget"], auth=VisitorToken())
ERRORS = error_responses(429)


def _ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR")


class RateIn(ApiSchema):
    client_id: str | None = client_id_field(required=False)
    conversation: str = Field(default="", pattern=UUID_OR_EMPTY, description="Empty: the current conversation.")
    score: Score = Field(description="thumbs: 1 (👎) or 5 (👍); five: 1 to 5 (else 409 invalid_score).")
    # Over the bound: 422 comment_too_long, the service's own code (pivra/api.py maps the schema's refusal).
    comment: str = Field(
        default="", max_length=RATING_COMMENT_MAX, description="Optional; longer → 422 comment_too_long."
    )


class TranscriptIn(ApiSchema):
    client_id: str | None = client_id_field(required=False)
    conversation: str = Field(default="", pattern=UUID_OR_EMPTY, description="Empty: the current conversation.")
    email: str = Field(
        max_length=EMAIL_MAX, pattern=EMAIL_PATTERN, description="Where to send it; invalid → 422 invalid_email."
    )


class EndChatIn(ApiSchema):
    client_id: str | None = client_id_field(required=False)
    conversation: str = Field(default="", pattern=UUID_OR_EMPTY, description="Empty: the current conversation.")


class TranscriptOut(Schema):
    client_id: str | None
    email: str


@router.post(
    "/rate", response={200: AckStateOut, **ERRORS}, summary='Answer "How did we do?" (once per resolved conversation)'
)
def rate(request: HttpRequest, payload: RateIn) -> dict[str, Any]:
    return survey.widget_rate(
        visitor=request.auth,  # type: ignore[attr-defined]
        client_id=payload.client_id,
        score=payload.score,
        comment=payload.comment,
        conversation=payload.conversation or None,
        ip=_ip(request),
    )


@router.post(
    "/transcript", response={200: TranscriptOut, **ERRORS}, summary="Email the resolved conversation's transcript"
)
def transcript(request: HttpRequest, payload: TranscriptIn) -> dict[str, Any]:
    return survey.widget_transcript(
        visitor=request.auth,  # type: ignore[attr-defined]
        client_id=payload.client_id,
        email=payload.email,
        conversation=payload.conversation or None,
        ip=_ip(request),
    )


@router.post(
    "/end",
    response={200: AckStateOut, **ERRORS},
    summary='"End chat" in a conversation with the AI (then the resolved screen: rating, transcript)',
)
def end_chat(request: HttpRequest, payload: EndChatIn) -> dict[str, Any]:
    return survey.widget_end_chat(
        visitor=request.auth,  # type: ignore[attr-defined]
        client_id=payload.client_id,
        conversation=payload.conversation or None,
        ip=_ip(request),
    )
