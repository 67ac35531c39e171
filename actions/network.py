"""Outbound HTTP for deliveries: the guard now lives in ``pivra.outbound``, shared with the AI
endpoint; these names stay importable from here."""

from __future__ import annotations

from pivra import outbound as _outbound
from pivra.outbound import (
    NOT_ALLOWED,
    RESPONSE_EXCERPT_BYTES,
    DestinationNotAllowed,
    HttpReply,
    PinnedTransport,
    ResolutionFailed,
    address_allowed,
    http_post,
    outbound_allow_private,
    resolve_destination,
    url_allowed_literal,
)

# The resolver the guard calls; tests patch ``network.socket.getaddrinfo``.
socket = _outbound.socket

__all__ = [
    "NOT_ALLOWED",
    "RESPONSE_EXCERPT_BYTES",
    "DestinationNotAllowed",
    "HttpReply",
    "PinnedTransport",
    "ResolutionFailed",
    "address_allowed",
    "http_post",
    "outbound_allow_private",
    "resolve_destination",
    "socket",
    "url_allowed_literal",
]
