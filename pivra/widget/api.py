"""The widget's HTTP API (same operations as the socket), authenticated by the visitor token."""

from __future__ import annotations

from typing import Any

from django.http import HttpRequest
from django.utils import translation
from ninja import Query, Router, Schema, Status
from ninja.security import HttpBearer
from pydantic import Field

from conversations.models import Visitor
from pivra.api_schema import (
    LOCALE,
    MAX_SEQ,
    NO_NUL,
    PHONE,
    PUBLIC_KEY,
    UUID_OR_EMPTY,
    ApiSchema,
    client_id_field,
    error_responses,
    text_field,
)
from pivra.widget import live, operations
from pivra.widget.tokens import visitor_from_token


class VisitorToken(HttpBearer):
    def authenticate(self, request: HttpRequest, token: str) -> Visitor | None:
        visitor = visitor_from_token(token)
        if visitor is not None:
            # Refusal details the widget shows are worded in the visitor's language, not the browser's
            # Accept-Language (a chatbot may fix its language). LocaleMiddleware activates afresh per request.
            translation.activate(operations.visitor_language(visitor=visitor))
        return visitor


router = Router(tags=["widget"], auth=VisitorToken())


def _visitor(request: HttpRequest) -> Visitor:
    visitor: Visitor = request.auth  # type: ignore[attr-defined]
    return visitor


def _ip(request: HttpRequest) -> str | None:
    return request.META.get("REMOTE_ADDR")


class SessionIn(ApiSchema):
    public_key: str = Field(pattern=PUBLIC_KEY, description="The chatbot's public key (pk_…).")
    token: str | None = Field(
        default=None, max_length=500, pattern=NO_NUL, description="A stored visitor token to resume, if any."
    )
    locale: str = Field(default="", max_length=35, pattern=LOCALE)
    language: str = Field(
        default="",
        max_length=35,
        pattern=LOCALE,
        description="The widget's negotiated language (issue 17): a conversation started now is held in it.",
    )
    page: str | None = Field(default=None, max_length=1000, pattern=NO_NUL)


class HandoffStateOut(Schema):
    status: str
    trigger: str
    agent: str | None
    transfer_to: str | None = None  # the colleague a transfer waits on (pending only)
    waiting_message: str
    busy_message: str
    # "timeout", or "offline" / "after_hours" when the request skipped the wait (then offline_message shows).
    busy_reason: str = ""
    offline_message: str = ""
    lead_phone: str | None
    # Where a waiting visitor stands (1 = next; None outside the line or past the numbered places, then
    # position_over says how far: "50+ people are ahead of you") and the usual wait (None: too little history).
    position: int | None = None
    position_over: int | None = None
    wait_seconds: int | None = None


class SurveyOut(Schema):
    scale: str  # "thumbs" | "five"
    score: int | None  # the visitor's rating, once given (thumbs: 1 or 5)


class StateOut(Schema):
    conversation: str
    status: str
    last_seq: int
    # True while the owner hides "Talk to a human" outside office hours and it is outside them.
    handoff_hidden: bool = False
    # "How did we do?" on the resolved screen: null unless the conversation is closed and the survey on.
    survey: SurveyOut | None = None
    handoff: HandoffStateOut | None


class SessionOut(Schema):
    token: str
    visitor: str
    state: StateOut


class EventOut(Schema):
    type: str
    conversation: str
    seq: int
    kind: str
    author: str
    text: str
    agent: str | None
    client_id: str | None
    data: dict[str, Any]
    created_at: str


class EventsOut(Schema):
    state: StateOut
    events: list[EventOut]


class MessageIn(ApiSchema):
    client_id: str = client_id_field(required=True)
    text: str = text_field()


class AckOut(Schema):
    client_id: str | None
    seq: int


class AckStateOut(AckOut):
    state: StateOut


class ClientIdIn(ApiSchema):
    client_id: str | None = client_id_field(required=False)


class OfferIn(ApiSchema):
    client_id: str = client_id_field(required=True)
    offer_seq: int = Field(ge=1, le=MAX_SEQ, description="The seq of the offer event being answered.")
    accept: bool


class LeadIn(ApiSchema):
    client_id: str | None = client_id_field(required=False)
    phone: str = Field(
        min_length=1,
        max_length=40,
        pattern=PHONE,
        description="A mobile number, e.g. +44 7911 123456 (national formats are read with the locale's "
        "region). One that is not a valid mobile number of its country is 400 invalid_phone.",
    )
    locale: str = Field(default="", max_length=35, pattern=LOCALE)


class SwitchOut(Schema):
    state: StateOut


ERRORS = error_responses(429)


@router.post("/session", auth=None, response={200: SessionOut, **ERRORS}, summary="Start or resume a visitor session")
def session(request: HttpRequest, payload: SessionIn) -> dict[str, Any]:
    return operations.widget_session(
        public_key=payload.public_key,
        token=payload.token,
        locale=payload.locale,
        page=payload.page or "",
        user_agent=request.headers.get("User-Agent", ""),
        ip=_ip(request),
        language=payload.language,
    )


@router.get("/events", response={200: EventsOut, **ERRORS}, summary="The conversation's events after a seq")
def events(
    request: HttpRequest,
    conversation: str = Query("", pattern=UUID_OR_EMPTY, description="Empty: the current conversation."),
    after_seq: int = Query(0, ge=0, le=MAX_SEQ),
) -> dict[str, Any]:
    return operations.widget_events(visitor=_visitor(request), conversation=conversation, after_seq=after_seq)


@router.post("/messages", response={200: AckOut, **ERRORS}, summary="Send a visitor message (idempotent per client_id)")
def messages(request: HttpRequest, payload: MessageIn) -> dict[str, Any]:
    return operations.widget_message(
        visitor=_visitor(request), client_id=payload.client_id, text=payload.text, ip=_ip(request)
    )


@router.post("/handoff", response={200: AckStateOut, **ERRORS}, summary='"Talk to a human"')
def handoff(request: HttpRequest, payload: ClientIdIn) -> dict[str, Any]:
    return operations.widget_handoff(visitor=_visitor(request), client_id=payload.client_id, ip=_ip(request))


@router.post(
    "/handoff/offer",
    response={200: AckStateOut, **ERRORS},
    summary='Answer "Would you like to speak with a team member?"',
)
def offer(request: HttpRequest, payload: OfferIn) -> dict[str, Any]:
    return operations.widget_offer_reply(
        visitor=_visitor(request),
        client_id=payload.client_id,
        offer_seq=payload.offer_seq,
        accept=payload.accept,
        ip=_ip(request),
    )


@router.post("/lead", response={200: AckStateOut, **ERRORS}, summary="Leave a mobile number (Team busy)")
def lead(request: HttpRequest, payload: LeadIn) -> dict[str, Any]:
    return operations.widget_lead(
        visitor=_visitor(request),
        client_id=payload.client_id,
        phone=payload.phone,
        locale=payload.locale,
        ip=_ip(request),
    )


@router.post(
    "/continue",
    response={200: SwitchOut, **ERRORS},
    summary='"Continue with AI" while the team is busy (idempotent per client_id)',
)
def continue_with_ai(request: HttpRequest, payload: ClientIdIn) -> dict[str, Any]:
    return operations.widget_continue(visitor=_visitor(request), client_id=payload.client_id, ip=_ip(request))


@router.post("/new", response={200: SwitchOut, **ERRORS}, summary='"Start new conversation" (idempotent per client_id)')
def new_conversation(request: HttpRequest, payload: ClientIdIn) -> dict[str, Any]:
    return operations.widget_new_conversation(visitor=_visitor(request), client_id=payload.client_id, ip=_ip(request))


class TypingIn(ApiSchema):
    conversation: str = Field(pattern=UUID_OR_EMPTY, max_length=64, description="The conversation on screen.")
    on: bool = Field(strict=True, description="Typing (true) or stopped (false).")
    text: str | None = Field(
        default=None,
        max_length=12_000,
        pattern=NO_NUL,
        description="What the visitor has typed so far: relayed (cut to 1000 characters) only when the "
        "chatbot's owner turned the typing preview on, dropped otherwise. Longer is 422 invalid_input.",
    )


class SeenIn(ApiSchema):
    conversation: str = Field(pattern=UUID_OR_EMPTY, max_length=64)
    seq: int = Field(ge=1, le=MAX_SEQ, description="The highest seq of an agent message the widget has shown.")


class SeenOut(Schema):
    seen_seq: int | None


@router.post(
    "/typing",
    response={204: None, **ERRORS},
    summary="The visitor is typing (or stopped): relayed to the agents, never stored",
)
def typing(request: HttpRequest, payload: TypingIn) -> Status:
    live.widget_typing(
        visitor_id=_visitor(request).pk,
        conversation=payload.conversation,
        on=payload.on,
        text=payload.text,
        ip=_ip(request),
    )
    return Status(204, None)


@router.post("/seen", response={200: SeenOut, **ERRORS}, summary="The visitor has seen the conversation up to a seq")
def seen(request: HttpRequest, payload: SeenIn) -> dict[str, Any]:
    moved = live.widget_seen(
        visitor_id=_visitor(request).pk, conversation=payload.conversation, seq=payload.seq, ip=_ip(request)
    )
    return {"seen_seq": moved}
