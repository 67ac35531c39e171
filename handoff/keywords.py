"""Trigger keyword matching, insensitive to case, accents, punctuation and spacing.

Both sides are normalised and split into word tokens; a keyword matches when some contiguous run
of the text's tokens, joined, spells the keyword with its spaces removed. So "speakto someone" and
"speak to some one" match "speak to someone" (spacing ignored), while "inhumane" does not match
"human" and "someones" does not match "someone" (a match starts and ends on word boundaries).
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable

# Letters NFKD leaves whole (they are letters of their own, not a base letter plus a mark).
_FOLD = str.maketrans(
    {"ø": "o", "ł": "l", "æ": "ae", "œ": "oe", "đ": "d", "ð": "d", "þ": "th", "ħ": "h", "ŧ": "t", "\u0131": "i"}
)
# Scripts written without spaces between words: each character is a token of its own, so a keyword
# is found inside a sentence. Everything else splits on anything that is not a letter or digit.
_UNSPACED = "\u0e00-\u0eff\u1000-\u109f\u1780-\u17ff\u3040-\u30ff\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff"
_TOKEN = re.compile(rf"[{_UNSPACED}]|[^\W_{_UNSPACED}]+")


def _fold(text: str) -> str:
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    return "".join(ch for ch in decomposed if not unicodedata.combining(ch)).translate(_FOLD)


def phrase_tokens(*, text: str) -> list[str]:
    """``"Talk to a  REAL-person!"`` → ``["talk", "to", "a", "real", "person"]``; ``"Søren"`` → ``["soren"]``."""
    return _TOKEN.findall(_fold(text))


def normalize_phrase(*, text: str) -> str:
    """``"Talk to a  REAL-person!"`` → ``"talk to a real person"``; accents dropped (``é`` → ``e``)."""
    return " ".join(phrase_tokens(text=text))


def _spelled_by_a_run(tokens: list[str], needle: str) -> bool:
    for start in range(len(tokens)):
        joined = ""
        for token in tokens[start:]:
            joined += token
            if not needle.startswith(joined):
                break
            if joined == needle:
                return True
    return False


def matching_keyword(*, text: str, keywords: Iterable[str]) -> str | None:
    """The first keyword that a contiguous run of ``text``'s words spells, whatever the spacing, else None."""
    tokens = phrase_tokens(text=text)
    for keyword in keywords:
        needle = "".join(phrase_tokens(text=keyword))
        if needle and _spelled_by_a_run(tokens, needle):
            return keyword
    return None
