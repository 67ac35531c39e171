"""Trigger keyword matching, insensitive to case, accents, punctuation and spacing."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

_NON_WORD = re.compile(r"[\W_]+", re.UNICODE)


def normalize_phrase(text: str) -> str:
    """``"Talk to a  REAL-person!"`` → ``"talk to a real person"``; accents dropped (``é`` → ``e``)."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    without_marks = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return _NON_WORD.sub(" ", without_marks).strip()


def matching_keyword(text: str, keywords: Iterable[str]) -> str | None:
    """The first keyword found as a whole phrase in ``text`` (word boundaries respected), else None."""
    haystack = f" {normalize_phrase(text)} "
    for keyword in keywords:
        needle = normalize_phrase(keyword)
        if needle and f" {needle} " in haystack:
            return keyword
    return None
