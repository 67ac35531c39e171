"""The client's address and scheme as our trusted proxies saw them, for HTTP and WebSocket alike.

Each proxy appends the address it received the request from to ``X-Forwarded-For``, so the list
reads ``<whatever the client wrote>, …, <seen by the outermost proxy>, …, <seen by the innermost>``.
Only the last ``PIVRA_PROXY_HOPS`` entries were written by proxies we run; the client's own address
is the one the outermost of them saw: the ``PIVRA_PROXY_HOPS``-th from the right. Everything left of
it is the client's to choose (daphne's ``--proxy-headers`` takes the leftmost, which let every
request pick its own address and with it its per-IP rate-limit bucket).

The middleware rewrites ``scope["client"]`` (Django's ``REMOTE_ADDR``, the sockets' address) and
``scope["scheme"]`` (from ``X-Forwarded-Proto``) before anything else reads them. Without
``PIVRA_BEHIND_PROXY`` both headers are ignored.

The headers are honoured only from a direct peer in ``PIVRA_TRUSTED_PROXIES`` (addresses or CIDR
ranges; by default loopback and the private ranges, where a proxy of ours stands). Anyone else who
reaches daphne directly could otherwise write ``X-Forwarded-For: 127.0.0.1`` and pass for the
machine itself, or a new address per request for a fresh rate-limit bucket. From such a peer both
headers are removed, so Django's ``SECURE_PROXY_SSL_HEADER`` does not believe them either.
Only the direct peer is checked: the entries between it and the hop are taken on the hop count's
word (listing a CDN's ranges is not needed), so the outer proxies must be the only way in.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Awaitable, Iterable, Sequence
from functools import lru_cache
from typing import Any

from django.conf import settings

Headers = Iterable[tuple[bytes, bytes]]
Network = ipaddress.IPv4Network | ipaddress.IPv6Network
FORWARDED_HEADERS = (b"x-forwarded-for", b"x-forwarded-proto")


@lru_cache(maxsize=8)
def _networks(entries: tuple[str, ...]) -> tuple[Network, ...]:
    return tuple(ipaddress.ip_network(entry.strip(), strict=False) for entry in entries if entry.strip())


def trusted_networks(entries: Sequence[str]) -> tuple[Network, ...]:
    """``PIVRA_TRUSTED_PROXIES`` parsed (``ValueError`` names a bad entry; settings check it at start)."""
    return _networks(tuple(entries))


def is_trusted_proxy(peer: str | None, *, trusted: Sequence[str]) -> bool:
    """Whether the direct peer is one of our proxies. An IPv4 peer seen through an IPv6 socket
    (``::ffff:10.0.0.2``) counts as its IPv4 address. No address at all is a Unix socket (daphne
    ``-u``), which only processes on this machine can reach: trusted like loopback."""
    if not peer:
        return True
    try:
        address = ipaddress.ip_address(peer or "")
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    return any(address.version == network.version and address in network for network in trusted_networks(trusted))


def _header_values(headers: Headers, name: bytes) -> list[str]:
    """Every comma-separated entry of every copy of a header, in order (a repeated header is one list)."""
    entries: list[str] = []
    for key, value in headers:
        if key.lower() == name:
            entries.extend(part.strip() for part in value.decode("latin-1").split(","))
    return [entry for entry in entries if entry]


def _address(entry: str) -> str | None:
    """``203.0.113.9``, ``203.0.113.9:4711``, ``2001:db8::1`` or ``[2001:db8::1]:443`` → the bare address."""
    candidates = [entry]
    if entry.startswith("[") and "]" in entry:
        candidates = [entry[1 : entry.index("]")]]
    elif entry.count(":") == 1:
        candidates.append(entry.split(":", 1)[0])
    for candidate in candidates:
        try:
            return str(ipaddress.ip_address(candidate))
        except ValueError:
            continue
    return None


def forwarded_client(headers: Headers, *, hops: int) -> str | None:
    """The address ``hops`` proxies in from us saw, or None when the header is missing or that entry
    is not an address. A list shorter than ``hops`` (a request that skipped an outer proxy) yields its
    leftmost entry: the furthest any of our proxies saw."""
    entries = _header_values(headers, b"x-forwarded-for")
    if not entries:
        return None
    return _address(entries[-hops] if len(entries) >= hops else entries[0])


def forwarded_scheme(headers: Headers, *, websocket: bool) -> str | None:
    """``X-Forwarded-Proto`` as an ASGI scheme. Its leftmost value, like Django's
    ``SECURE_PROXY_SSL_HEADER``: the edge proxy sets it for the connection the browser made."""
    entries = _header_values(headers, b"x-forwarded-proto")
    if not entries:
        return None
    secure = entries[0].lower() == "https"
    if websocket:
        return "wss" if secure else "ws"
    return "https" if secure else "http"


class ProxyHeadersMiddleware:
    """ASGI middleware: client address and scheme from the trusted proxy hop (``PIVRA_BEHIND_PROXY``),
    when the direct peer is a trusted proxy (``PIVRA_TRUSTED_PROXIES``)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    # A plain callable handing on the next awaitable: no coroutine per connection (pivra/asgi_layers.py).
    _asgi_single_callable = True

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        if scope.get("type") in ("http", "websocket") and settings.BEHIND_PROXY:
            headers = list(scope.get("headers") or [])
            scope = dict(scope)
            peer = (scope.get("client") or (None,))[0]
            if not is_trusted_proxy(peer, trusted=settings.TRUSTED_PROXIES):
                # Not one of our proxies: what it says about the client is the client's own claim.
                scope["headers"] = [(key, value) for key, value in headers if key.lower() not in FORWARDED_HEADERS]
                return self.application(scope, receive, send)
            client = forwarded_client(headers, hops=settings.PROXY_HOPS)
            if client is not None:
                scope["client"] = (client, 0)
            scheme = forwarded_scheme(headers, websocket=scope["type"] == "websocket")
            if scheme is not None:
                scope["scheme"] = scheme
        return self.application(scope, receive, send)
