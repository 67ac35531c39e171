"""The console API of internal notes: read a conversation's notes, add one.

Session-authenticated (CSRF-checked) and scoped to the agent's workspaces, as the rest of the
console API; mounted under /api/console/. The console socket's ``note`` command calls the same
service (``conversations.notes.note_add``) and answers with the same body."""

from __future__ import annotations

from typing import Annotated, Any

from django.contrib.auth.models import User
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Path, Router, Schema, Status
from ninja.security import django_auth

from conversations.models import Conversation
from conversations.notes import NOTES_PER_MINUTE, note_ack, note_add, note_body, notes_for_conversation
from pivra.api_schema import UUID, ApiSchema, client_id_field, error_responses
from pivra.errors import NotFound
from pivra.ids import parse_uuid
from pivra.widget.ratelimit import rate_limit_hit

router = Router(tags=["console"], auth=django_auth)
ERRORS = error_responses()
ConversationId = Annotated[str, Path(pattern=UUID)]


class NoteOut(Schema):
    id: str
    after_seq: int
    author_name: str
    text: str
    mentions: list[int]
    client_id: str | None
    created_at: str


class NoteIn(ApiSchema):
    client_id: str | None = client_id_field(required=False)
    # A plain string: ``conversations.notes.clean_note_text`` answers note_empty / note_too_long, as the
    # console socket's ``note`` command does (a schema bound would answer with other codes).
    text: str


class NoteAckOut(Schema):
    client_id: str | None
    duplicate: bool
    note: NoteOut
    ambiguous_mentions: list[str]


def _agent(request: HttpRequest) -> User:
    user: User = request.auth  # type: ignore[attr-defined]
    return user


@router.get(
    "/conversations/{conversation_id}/notes",
    response={200: list[NoteOut], **ERRORS},
    summary="A conversation's internal notes (agents only; never shown to the visitor)",
)
def list_notes(request: HttpRequest, conversation_id: ConversationId) -> list[dict[str, Any]]:
    key = parse_uuid(conversation_id)
    conversation = (
        Conversation.objects.filter(public_id=key, chatbot__workspace__memberships__user_id=_agent(request).pk).first()
        if key
        else None
    )
    if conversation is None:
        raise NotFound("conversation_not_found", _("No such conversation in your workspaces."))
    return [note_body(note) for note in notes_for_conversation(conversation=conversation)]


@router.post(
    "/conversations/{conversation_id}/notes",
    response={201: NoteAckOut, **ERRORS},
    summary="Add an internal note (any member of the workspace); @name mentions tell that teammate",
    description="The note goes only to the workspace's agents (the console socket's `note` frame to the "
    "conversation's watchers, `note.mention` to each member @mentioned) — never to the visitor. A resend "
    "with the same `client_id` is stored once (`duplicate: true`). `ambiguous_mentions` lists each "
    "@name more than one member answers to (nobody was told through it: use their @username). "
    f"At most {NOTES_PER_MINUTE} notes a minute per agent (`rate_limited`, 429).",
)
def add_note(request: HttpRequest, conversation_id: ConversationId, payload: NoteIn) -> Status[dict[str, Any]]:
    agent = _agent(request)
    rate_limit_hit(bucket=f"note:u:{agent.pk}", limit=NOTES_PER_MINUTE)
    created = note_add(
        author=agent, conversation_public_id=conversation_id, text=payload.text, client_id=payload.client_id
    )
    return Status(201, note_ack(created))
