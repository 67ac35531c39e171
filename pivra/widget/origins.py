"""Website origins as they are written into the frame's ``Content-Security-Policy: frame-ancestors``."""

from __future__ import annotations

from chatbots.services import is_plain_origin, normalize_origin

__all__ = ["clean_origin", "is_plain_origin"]


def clean_origin(value: str) -> str:
    """``https://Shop.Example/`` → ``https://shop.example``; refuses anything that is not a plain origin,
    such as ``*`` or ``https://a; script-src *``. The one rule the services, forms, admin and the
    frame view share (``normalize_origin``), under the name the widget code knows it by."""
    return normalize_origin(value)
