"""Website origins as they are written into the frame's ``Content-Security-Policy: frame-ancestors``."""

from __future__ import annotations

import re

from chatbots.services import normalize_origin
from pivra.errors import DomainError

_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# scheme://host[:port] in normal form (lower case, no trailing slash) and nothing else: no space,
# ";" or "*" that would end the source list or widen it.
_PLAIN_ORIGIN = re.compile(rf"https?://{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?")


def is_plain_origin(value: object) -> bool:
    return isinstance(value, str) and _PLAIN_ORIGIN.fullmatch(value) is not None


def clean_origin(value: str) -> str:
    """``https://Shop.Example/`` → ``https://shop.example``; refuses anything that is not a plain origin,
    such as ``*`` or ``https://a; script-src *`` (which ``normalize_origin`` alone lets through)."""
    try:
        origin = normalize_origin(value)
    except ValueError:  # urlsplit's port, e.g. https://a:99999
        origin = ""
    if not is_plain_origin(origin):
        raise DomainError("invalid_origin", f"{value!r} is not a site address like https://www.example.com.")
    return origin
