"""Client → server frames of the widget protocol (docs in README), validated with pydantic."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, TypeAdapter

from pivra.inputs import MAX_SEQ


def _no_bool_or_text(value: object) -> object:
    # Lax integers would take JSON true as 1 and "5" as 5; 4.0 stays (JSON Schema calls it an integer).
    if isinstance(value, bool | str):
        raise ValueError("must be an integer")
    return value


# A rating's score (the ``rate`` frame and POST /api/widget/rate): an integer, never true or "5".
Score = Annotated[int, Field(ge=1, le=5), BeforeValidator(_no_bool_or_text)]

ClientId = Annotated[str, Field(min_length=1, max_length=64)]


class _Frame(BaseModel):
    model_config = ConfigDict(extra="ignore", str_strip_whitespace=False)


class Hello(_Frame):
    type: Literal["hello"]
    token: str = Field(max_length=500)
    conversation: str | None = Field(default=None, max_length=64)
    last_seq: int = Field(default=0, ge=0, le=MAX_SEQ)


class Message(_Frame):
    type: Literal["message"]
    client_id: ClientId
    text: str = Field(max_length=100_000)


class HandoffRequest(_Frame):
    type: Literal["handoff.request"]
    client_id: ClientId | None = None


class OfferReply(_Frame):
    type: Literal["handoff.offer_reply"]
    client_id: ClientId
    offer_seq: int = Field(ge=1, le=MAX_SEQ)
    accept: bool


class Lead(_Frame):
    type: Literal["lead"]
    client_id: ClientId | None = None
    phone: str = Field(max_length=60)
    locale: str = Field(default="", max_length=35)


class ContinueWithAI(_Frame):
    type: Literal["continue_with_ai"]
    client_id: ClientId | None = None


class NewConversation(_Frame):
    type: Literal["new_conversation"]
    client_id: ClientId | None = None


class Page(_Frame):
    type: Literal["page"]
    url: str = Field(max_length=1000)


class Ping(_Frame):
    type: Literal["ping"]


class Typing(_Frame):
    """The visitor is typing (``on``) or stopped; ``text`` is what they have typed so far, relayed to the
    agents only when the chatbot's owner turned the live preview on (``pivra.widget.live``). Never stored."""

    type: Literal["typing"]
    conversation: str = Field(max_length=64)
    on: bool
    text: str | None = Field(default=None, max_length=12_000)


class Seen(_Frame):
    """The visitor has seen the conversation up to ``seq`` (the widget open, the page visible)."""

    type: Literal["seen"]
    conversation: str = Field(max_length=64)
    seq: int = Field(ge=1, le=MAX_SEQ)


class Rate(_Frame):
    """The visitor's answer to "How did we do?" on the resolved screen (``pivra.widget.survey``)."""

    type: Literal["rate"]
    client_id: ClientId | None = None
    conversation: str | None = Field(default=None, max_length=64)
    score: Score
    comment: str = Field(default="", max_length=4000)


class EndChat(_Frame):
    """ "End chat" in a conversation with the AI (``pivra.widget.survey.widget_end_chat``)."""

    type: Literal["end_chat"]
    client_id: ClientId | None = None
    conversation: str | None = Field(default=None, max_length=64)


class Transcript(_Frame):
    """Email me the transcript (the resolved screen)."""

    type: Literal["transcript"]
    client_id: ClientId | None = None
    conversation: str | None = Field(default=None, max_length=64)
    email: str = Field(max_length=320)


ClientFrame = Annotated[
    Hello
    | Message
    | HandoffRequest
    | OfferReply
    | Lead
    | ContinueWithAI
    | NewConversation
    | Page
    | Ping
    | Rate
    | Transcript
    | EndChat
    | Typing
    | Seen,
    Field(discriminator="type"),
]
client_frame_adapter: TypeAdapter[ClientFrame] = TypeAdapter(ClientFrame)
KNOWN_TYPES = {
    "hello",
    "message",
    "handoff.request",
    "handoff.offer_reply",
    "lead",
    "continue_with_ai",
    "new_conversation",
    "page",
    "ping",
    "rate",
    "transcript",
    "end_chat",
    "typing",
    "seen",
}
