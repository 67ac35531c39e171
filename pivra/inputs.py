"""Input checks shared by the edge (middleware, API parser, socket frames) and every parsed parameter.

PostgreSQL refuses a NUL character in text and psycopg refuses a lone surrogate (it cannot encode
it as UTF-8): either reaching a query is a 500, and inside a streaming response a hung download.
Python's ``int`` takes Unicode digits (``int("٣") == 3``, while ``int("²")`` raises although
``"²".isdigit()``) and refuses over 4,300 digits; ``date.fromisoformat`` takes years the database
cannot store. Everything here accepts only plain, bounded values and says what was wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import date
from typing import Any

from django.utils.translation import gettext as _

from pivra.errors import DomainError

# NUL, and the surrogate range (only a lone surrogate can sit in a Python str decoded from JSON).
_FORBIDDEN = re.compile("[\x00\ud800-\udfff]")
_ASCII_INT = re.compile(r"-?[0-9]{1,19}")
_CLIENT_ID = re.compile(r"[!-~]{1,64}")
# Dates the console filters on; anything outside is a typo or a probe, and far years overflow
# datetime arithmetic (9999-12-31 + 1 day) or the database.
MIN_DATE = date(2000, 1, 1)
MAX_DATE = date(2100, 1, 1)
MAX_CLIENT_ID_LENGTH = 64
MAX_JSON_DEPTH = 64
MAX_ID = 2**63 - 1  # a bigint primary key
MAX_SEQ = 2**31 - 1  # an event's seq (a PositiveIntegerField)


class InvalidInput(DomainError):
    """A value that is not data we can store or query: 400 ``invalid_input`` (or a narrower code)."""

    def __init__(self, detail: str, *, code: str = "invalid_input", status: int = 400) -> None:
        super().__init__(code, detail, status=status)


def has_forbidden(value: str) -> bool:
    """True when ``value`` holds a character no text column can take (NUL, a lone surrogate)."""
    return _FORBIDDEN.search(value) is not None


def has_forbidden_in(data: Any, *, depth: int = 0) -> bool:
    """``has_forbidden`` over every string (keys included) of a decoded JSON document; also True
    for a document nested deeper than MAX_JSON_DEPTH."""
    if isinstance(data, str):
        return has_forbidden(data)
    if depth > MAX_JSON_DEPTH:  # only hostile input nests this deep: refused rather than recursed into
        return True
    if isinstance(data, Mapping):
        return any(has_forbidden(str(k)) or has_forbidden_in(v, depth=depth + 1) for k, v in data.items())
    if isinstance(data, list | tuple):
        return any(has_forbidden_in(v, depth=depth + 1) for v in data)
    return False


def strip_unstorable(value: str) -> str:
    """``value`` without NUL and lone surrogates: for text kept as a courtesy (a user agent, a
    locale), where dropping a bad character is kinder than refusing the whole visit."""
    return _FORBIDDEN.sub("", value)


def clean_text(value: str | None, *, field: str = "text", max_length: int | None = None) -> str:
    """``value`` as storable text (None → ""); refuses NUL and lone surrogates, and over-long text."""
    text = value or ""
    if has_forbidden(text):
        raise InvalidInput(
            _("%(field)s contains characters that are not allowed (NUL or an unpaired surrogate).") % {"field": field}
        )
    if max_length is not None and len(text) > max_length:
        raise InvalidInput(
            _("%(field)s can be at most %(limit)d characters long.") % {"field": field, "limit": max_length}
        )
    return text


def parse_int(value: str | int | None, *, min_value: int, max_value: int) -> int | None:
    """``"42"`` → 42 within [min_value, max_value]; None for anything else: no value, Unicode digits
    (``²``, ``٣``), signs where none are allowed, overlong numbers, or out of range."""
    if isinstance(value, bool) or value is None:
        return None
    if isinstance(value, int):
        number = value
    else:
        text = value.strip()
        if not _ASCII_INT.fullmatch(text):
            return None
        number = int(text)
    return number if min_value <= number <= max_value else None


def parse_date(
    value: str | None, *, field: str | None = None, min_value: date = MIN_DATE, max_value: date = MAX_DATE
) -> date | None:
    """``"2026-03-06"`` → that date; None for no value; raises InvalidInput for anything that is not
    a plain ``YYYY-MM-DD`` date (ASCII digits) within [min_value, max_value]."""
    text = (value or "").strip()
    if not text:
        return None
    field = field or _("The date")
    try:
        day = date.fromisoformat(text) if re.fullmatch(r"[0-9]{4}-[0-9]{2}-[0-9]{2}", text) else None
    except ValueError:  # 2026-13-45
        day = None
    if day is None:
        raise InvalidInput(_("%(field)s must be a date like 2026-03-06.") % {"field": field})
    if not min_value <= day <= max_value:
        raise InvalidInput(
            _("%(field)s must be between %(min)s and %(max)s.")
            % {"field": field, "min": min_value.isoformat(), "max": max_value.isoformat()}
        )
    return day


def clean_client_id(value: str | None, *, required: bool) -> str | None:
    """A client id is 1 to 64 visible ASCII characters: no spaces, no control characters (the API
    schema's pattern, applied to socket frames too). None is allowed only where the id is optional;
    an empty string never is (it would be stored, and a second one would clash)."""
    if value is None and not required:
        return None
    if value is None or not _CLIENT_ID.fullmatch(value):
        raise InvalidInput(
            _("client_id must be 1 to %(max)d visible ASCII characters (no spaces).") % {"max": MAX_CLIENT_ID_LENGTH},
            code="invalid_client_id",
        )
    return value
