"""The console API for agents: list handoffs, open a conversation, claim, reply, resolve.

Session-authenticated (CSRF-checked) and always scoped to the agent's workspaces."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from django.contrib.auth.models import User
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest
from django.utils import timezone
from django.utils.translation import gettext as _
from ninja import Field, Path, Query, Router, Schema, Status
from ninja.security import django_auth

from chatbots.models import Membership
from conversations.frames import event_frame
from conversations.models import Conversation, Event
from conversations.services import Received, conversation_events_after
from handoff.models import Handoff
from handoff.state import agent_display_name
from handoff.transitions.claim import handoff_claim
from handoff.transitions.offers import handoff_offer_decline, offers_for_agent
from handoff.transitions.release import handoff_release
from handoff.transitions.reply import handoff_reply
from handoff.transitions.resolve import handoff_resolve
from handoff.transitions.takeover import handoff_take_over
from handoff.transitions.transfer import handoff_transfer, transfer_targets
from pivra.api_schema import MAX_SEQ, UUID, ApiSchema, client_id_field, error_responses, text_field
from pivra.errors import DomainError, NotFound
from pivra.ids import parse_uuid

router = Router(tags=["console"], auth=django_auth)


ERRORS = error_responses()
# A conversation's public id in a path: a UUID (anything else is 422 invalid_input).
ConversationId = Annotated[str, Path(pattern=UUID)]
HandoffFilter = Literal["open", "all", "pending", "active", "busy", "resolved"]


class HandoffOut(Schema):
    conversation: str
    chatbot: str
    status: str
    trigger: str
    requested_at: datetime
    waiting_seconds: int
    claimed_by: str | None
    claimed_at: datetime | None
    timed_out_at: datetime | None
    resolved_at: datetime | None
    last_message: str | None
    lead_phone: str | None


def _agent(request: HttpRequest) -> User:
    user: User = request.auth  # type: ignore[attr-defined]
    return user


def _workspace_ids(user: User) -> list[int]:
    return list(Membership.objects.filter(user=user).values_list("workspace_id", flat=True))


def handoffs_for_console() -> QuerySet[Handoff]:
    """Handoffs with what a console row shows, in one query: the joined rows and the last message."""
    last_message = (
        Event.objects.filter(conversation_id=OuterRef("conversation_id"), kind="message")
        .order_by("-seq")
        .values("text")[:1]
    )
    return Handoff.objects.select_related("conversation", "chatbot", "claimed_by").annotate(
        last_message=Subquery(last_message)
    )


def handoff_out(*, handoff: Handoff, now: datetime | None = None) -> dict[str, Any]:
    """A console row; ``handoff`` comes from ``handoffs_for_console`` (it carries ``last_message``)."""
    now = now or timezone.now()
    end = handoff.claimed_at or handoff.resolved_at or now
    conversation = handoff.conversation
    return {
        "conversation": str(conversation.public_id),
        "chatbot": handoff.chatbot.name,
        "status": handoff.status,
        "trigger": handoff.trigger,
        "requested_at": handoff.requested_at,
        "waiting_seconds": max(0, int((end - handoff.requested_at).total_seconds())),
        "claimed_by": agent_display_name(handoff.claimed_by),
        "claimed_at": handoff.claimed_at,
        "timed_out_at": handoff.timed_out_at,
        "resolved_at": handoff.resolved_at,
        "last_message": handoff.last_message,  # type: ignore[attr-defined]  # the annotation
        "lead_phone": conversation.lead.get("phone"),
    }


@router.get("/handoffs", response={200: list[HandoffOut], **ERRORS}, summary="Handoffs in your workspaces")
def list_handoffs(request: HttpRequest, status: HandoffFilter = "open") -> list[dict[str, Any]]:
    """``status``: ``open`` (waiting, busy and active — the Handoff tab), ``all``, or one status."""
    query = handoffs_for_console().filter(workspace_id__in=_workspace_ids(_agent(request)))
    if status == "open":
        query = query.exclude(status=Handoff.Status.RESOLVED)
    elif status in Handoff.Status.values:
        query = query.filter(status=status)
    elif status != "all":
        raise DomainError("invalid_status", _("status must be open, all, pending, active, busy or resolved."))
    now = timezone.now()
    return [handoff_out(handoff=h, now=now) for h in query.order_by("requested_at")[:500]]


class ConversationOut(Schema):
    conversation: str
    chatbot: str
    status: str
    created_at: datetime
    visitor: dict[str, Any]
    lead: dict[str, Any]
    handoff: HandoffOut | None
    events: list[dict[str, Any]]


@router.get(
    "/conversations/{conversation_id}",
    response={200: ConversationOut, **ERRORS},
    summary="A conversation's whole thread, visitor details and lead data",
)
def get_conversation(request: HttpRequest, conversation_id: ConversationId) -> dict[str, Any]:
    conversation = _conversation(request, conversation_id)
    handoff = handoffs_for_console().filter(conversation=conversation).first()
    visitor = conversation.visitor
    return {
        "conversation": str(conversation.public_id),
        "chatbot": conversation.chatbot.name,
        "status": conversation.status,
        "created_at": conversation.created_at,
        "visitor": {
            "id": str(visitor.public_id),
            "first_seen_at": visitor.first_seen_at.isoformat(),
            "last_seen_at": visitor.last_seen_at.isoformat(),
            "current_page": visitor.current_page,
            "locale": visitor.locale,
            "user_agent": visitor.user_agent,
        },
        "lead": conversation.lead,
        "handoff": handoff_out(handoff=handoff) if handoff else None,
        "events": [event_frame(e, conversation, team=True) for e in conversation.events.order_by("seq")],
    }


# A page of the events-after endpoint, as long as the sockets' replay (REPLAY_LIMIT): a client that
# is further behind asks again from the last seq it got.
EVENTS_PAGE = 500


class EventsPageOut(Schema):
    conversation: str
    last_seq: int
    has_more: bool
    events: list[dict[str, Any]]


@router.get(
    "/conversations/{conversation_id}/events",
    response={200: EventsPageOut, **ERRORS},
    summary="A conversation's events after a seq (at most 500, in seq order)",
    description="What a client missed: a console view that sees a hole in the seqs it received fetches it "
    "here. `last_seq` is the conversation's last seq when the events were read. `has_more` is true when "
    "the page limit cut the answer: ask again from the last seq returned. (Seqs can be missing — an "
    "event deleted by staff — so counting them against `last_seq` does not tell.)",
)
def conversation_events(
    request: HttpRequest,
    conversation_id: ConversationId,
    after_seq: int = Query(0, ge=0, le=MAX_SEQ, description="The seq the client has every event up to."),
) -> dict[str, Any]:
    conversation = _conversation(request, conversation_id)
    # One row past the page tells whether there is more.
    events = conversation_events_after(conversation=conversation, after_seq=after_seq, limit=EVENTS_PAGE + 1)
    return {
        "conversation": str(conversation.public_id),
        "last_seq": conversation.last_seq,
        "has_more": len(events) > EVENTS_PAGE,
        "events": [event_frame(e, conversation, team=True) for e in events[:EVENTS_PAGE]],
    }


def _conversation(request: HttpRequest, conversation_id: str) -> Conversation:
    key = parse_uuid(conversation_id)
    conversation = (
        Conversation.objects.select_related("chatbot", "visitor")
        .filter(public_id=key, chatbot__workspace_id__in=_workspace_ids(_agent(request)))
        .first()
        if key
        else None
    )
    if conversation is None:
        raise NotFound("conversation_not_found", _("No such conversation in your workspaces."))
    return conversation


def claim_body(handoff: Handoff) -> dict[str, Any]:
    """What a claim answers, over HTTP and over the console socket."""
    return handoff_out(handoff=handoffs_for_console().get(pk=handoff.pk))


def reply_body(received: Received) -> dict[str, Any]:
    """What a reply answers, over HTTP and over the console socket."""
    return {"client_id": received.event.client_id, "seq": received.event.seq, "duplicate": received.duplicate}


@router.post("/handoffs/{conversation_id}/claim", response={200: HandoffOut, **ERRORS}, summary="Claim (first wins)")
def claim(request: HttpRequest, conversation_id: ConversationId) -> dict[str, Any]:
    return claim_body(handoff_claim(agent=_agent(request), conversation_public_id=conversation_id))


class ReplyIn(ApiSchema):
    client_id: str = client_id_field(required=True)
    text: str = text_field()


class ReplyOut(Schema):
    client_id: str | None
    seq: int
    duplicate: bool


@router.post(
    "/handoffs/{conversation_id}/reply",
    response={201: ReplyOut, **ERRORS},
    summary="Reply to the visitor (only the agent who claimed it)",
)
def reply(request: HttpRequest, conversation_id: ConversationId, payload: ReplyIn) -> Status[dict[str, Any]]:
    received = handoff_reply(
        agent=_agent(request), conversation_public_id=conversation_id, text=payload.text, client_id=payload.client_id
    )
    return Status(201, reply_body(received))


@router.post(
    "/handoffs/{conversation_id}/resolve",
    response={200: HandoffOut, **ERRORS},
    summary="Resolve: the conversation closes with its thread whole",
)
def resolve(request: HttpRequest, conversation_id: ConversationId) -> dict[str, Any]:
    handoff = handoff_resolve(agent=_agent(request), conversation_public_id=conversation_id)
    return handoff_out(handoff=handoffs_for_console().get(pk=handoff.pk))


class OfferOut(Schema):
    type: str
    conversation: str
    kind: str
    by: str | None
    chatbot: str
    expires_at: str
    url: str


@router.get("/offers", response={200: list[OfferOut], **ERRORS}, summary="Conversations offered to you right now")
def offers(request: HttpRequest) -> list[dict[str, Any]]:
    """Transfers and round-robin offers waiting for your Accept (the console shows them as notices)."""
    return offers_for_agent(agent=_agent(request))


class TransferIn(ApiSchema):
    to_user_id: int = Field(ge=1, le=MAX_SEQ, description="The colleague's user id (see `colleagues`).")


class ColleagueOut(Schema):
    id: int
    name: str


@router.get(
    "/handoffs/{conversation_id}/colleagues",
    response={200: list[ColleagueOut], **ERRORS},
    summary="Online colleagues this conversation can be transferred to",
)
def colleagues(request: HttpRequest, conversation_id: ConversationId) -> list[dict[str, Any]]:
    return transfer_targets(agent=_agent(request), conversation_public_id=conversation_id)


@router.post(
    "/handoffs/{conversation_id}/transfer",
    response={200: HandoffOut, **ERRORS},
    summary="Transfer to an online colleague (only the agent who claimed it); they must accept",
)
def transfer(request: HttpRequest, conversation_id: ConversationId, payload: TransferIn) -> dict[str, Any]:
    handoff = handoff_transfer(
        agent=_agent(request), conversation_public_id=conversation_id, to_user_id=payload.to_user_id
    )
    return claim_body(handoff)


@router.post(
    "/handoffs/{conversation_id}/release",
    response={200: HandoffOut, **ERRORS},
    summary="Release back to the queue (only the agent who claimed it)",
)
def release(request: HttpRequest, conversation_id: ConversationId) -> dict[str, Any]:
    return claim_body(handoff_release(agent=_agent(request), conversation_public_id=conversation_id))


@router.post(
    "/handoffs/{conversation_id}/take-over",
    response={200: HandoffOut, **ERRORS},
    summary="Take over a live conversation (owners and admins)",
)
def take_over(request: HttpRequest, conversation_id: ConversationId) -> dict[str, Any]:
    return claim_body(handoff_take_over(agent=_agent(request), conversation_public_id=conversation_id))


@router.post(
    "/handoffs/{conversation_id}/decline",
    response={200: HandoffOut, **ERRORS},
    summary="Decline a transfer or routing offer made to you (accepting is claiming)",
)
def decline(request: HttpRequest, conversation_id: ConversationId) -> dict[str, Any]:
    return claim_body(handoff_offer_decline(agent=_agent(request), conversation_public_id=conversation_id))
