"""Client → server frames of the widget protocol (docs in README), validated with pydantic."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pivra.inputs import MAX_SEQ

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


ClientFrame = Annotated[
    Hello | Message | HandoffRequest | OfferReply | Lead | ContinueWithAI | NewConversation | Page | Ping,
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
}
