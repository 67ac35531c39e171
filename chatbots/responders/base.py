"""The one interface every AI responder implements, and the types it speaks."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from django.utils import translation
from django.utils.translation import gettext_noop

# Shown to visitors instead of any provider error: the real cause goes to the logs only.
# Marked only (gettext_noop): conversations/ai.py words it in the conversation's language (``in_language``).
FRIENDLY_ERROR = gettext_noop(
    "Sorry, I'm having trouble answering right now. Please try again in a moment, or ask to talk to a human."
)


def in_language(text: str, language: str) -> str:
    """One of Pivra's own marked texts (``FRIENDLY_ERROR``, ``DEFAULT_FALLBACK``) in ``language`` ("" =
    as is: the source English)."""
    if not language:
        return text
    with translation.override(language):
        return translation.gettext(text)


@dataclass(frozen=True)
class ChatTurn:
    """One earlier message of the conversation, oldest first in a history."""

    role: Literal["visitor", "ai", "agent"]
    text: str


@dataclass(frozen=True)
class RetrievedEntry:
    """A knowledge entry that matched a query, with its BM25 score (higher is better)."""

    question: str
    answer: str
    score: float


class ResponderError(Exception):
    """A provider failed (timeout, HTTP error, malformed stream).

    The message is meant for logs and may name the endpoint's host or status; never show it to visitors
    (use ``FRIENDLY_ERROR``).
    """


class Responder(Protocol):
    def stream(self, *, question: str, history: Sequence[ChatTurn]) -> Iterator[str]:
        """Yield the reply's text in chunks; raise ResponderError when the provider fails."""
        ...
