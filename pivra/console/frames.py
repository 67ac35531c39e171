"""Client → server frames of the console socket, validated with pydantic."""

from __future__ import annotations

from typing import Annotated, Literal
from uuid import UUID

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter

from pivra.inputs import MAX_SEQ

MAX_FRAME_BYTES = 4096


class _Frame(BaseModel):
    model_config = ConfigDict(extra="forbid")


class Watch(_Frame):
    """Follow one conversation live; events after ``last_seq`` are replayed from the database first."""

    type: Literal["watch"]
    conversation: UUID
    last_seq: int = Field(default=0, ge=0, le=MAX_SEQ)


class Unwatch(_Frame):
    type: Literal["unwatch"]


class Ping(_Frame):
    type: Literal["ping"]


ClientFrame = Annotated[Watch | Unwatch | Ping, Field(discriminator="type")]
client_frame_adapter: TypeAdapter[Watch | Unwatch | Ping] = TypeAdapter(ClientFrame)
KNOWN_TYPES = frozenset({"watch", "unwatch", "ping"})
