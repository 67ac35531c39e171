"""The one door for server-side HTTP to addresses a tenant chose: webhooks, Slack, the AI endpoint.

Every connection is vetted at send time, on the address actually dialled: the host is resolved,
every address it resolves to must be public (loopback, private, link-local, CGNAT, multicast,
reserved and IPv4-in-IPv6 spellings of those are refused), and the socket is opened to that
vetted IP while the request keeps its original Host header and TLS SNI/certificate name. Checking
and dialling one resolution closes the DNS-rebinding gap. Redirects are never followed, proxies
from the environment are ignored, and the whole exchange has one hard deadline.

``PIVRA_OUTBOUND_ALLOW_PRIVATE`` (or its older name ``PIVRA_WEBHOOK_ALLOW_PRIVATE``) opens loopback
and private ranges for local development and tests; link-local (cloud metadata) never opens.

Refusals say only "destination not allowed": the message is stored in logs customers read, so it
must never name an internal address.
"""

from __future__ import annotations

import ipaddress
import re
import socket
import ssl
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import httpcore
import httpx
from django.conf import settings

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address

NOT_ALLOWED = "destination not allowed"
RESPONSE_EXCERPT_BYTES = 2048

# Ranges Python reports as global (or not at all) that still reach internal hosts.
_CGNAT = ipaddress.ip_network("100.64.0.0/10")
_THIS_NETWORK = ipaddress.ip_network("0.0.0.0/8")
_NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
# One inet_aton part: hex (0x7f), octal (0177) or decimal (127).
_LEGACY_PART = re.compile(r"^(?:0x[0-9a-f]*|0[0-7]*|[1-9][0-9]*)$", re.IGNORECASE)


class DestinationNotAllowed(Exception):
    """Refused by policy before any socket was opened. The message never names the address."""

    def __init__(self) -> None:
        super().__init__(NOT_ALLOWED)


class ResolutionFailed(Exception):
    def __init__(self) -> None:
        super().__init__("could not resolve the host name")


def _legacy_ipv4(host: str) -> ipaddress.IPv4Address | None:
    """The address inet_aton would read from ``2130706433``, ``0177.0.0.1``, ``0x7f.1`` or ``127.1``.

    Resolvers accept these spellings, so they are read here as the resolver would, never passed
    on as names. A numeric spelling out of range is refused outright.
    """
    parts = host.split(".")
    if not 1 <= len(parts) <= 4 or not all(_LEGACY_PART.match(part) for part in parts):
        return None
    values = []
    for part in parts:
        if part[:2].lower() == "0x":
            values.append(int(part[2:] or "0", 16))
        elif part.startswith("0"):
            values.append(int(part, 8))
        else:
            values.append(int(part))
    *head, last = values
    if any(v > 255 for v in head) or last >= 256 ** (4 - len(head)):
        raise DestinationNotAllowed
    number = 0
    for value in head:
        number = (number << 8) | value
    number = (number << (8 * (4 - len(head)))) | last
    return ipaddress.IPv4Address(number)


def _ip_literal(host: str) -> IPAddress | None:
    try:
        return ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return _legacy_ipv4(host)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 one carries: mapped ::ffff:a.b.c.d, compatible ::a.b.c.d, 6to4, Teredo, NAT64."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if ip.teredo is not None:
        return ip.teredo[1]
    packed = ip.packed
    if packed[:12] == bytes(12) and int(ip) > 1:
        return ipaddress.IPv4Address(packed[12:])
    if any(ip in network for network in _NAT64):
        return ipaddress.IPv4Address(packed[12:])
    return None


def address_allowed(ip: IPAddress, *, allow_private: bool = False) -> bool:
    """Public unicast only. ``allow_private`` (local development) opens loopback and private
    ranges; link-local (cloud metadata), multicast, reserved and unspecified stay closed."""
    if isinstance(ip, ipaddress.IPv6Address):
        embedded = _embedded_ipv4(ip)
        if embedded is not None:
            return address_allowed(embedded, allow_private=allow_private)
        if ip.is_site_local:
            return allow_private
    if ip.is_unspecified or ip.is_multicast or ip.is_link_local or ip.is_reserved:
        return False
    if isinstance(ip, ipaddress.IPv4Address) and (ip in _THIS_NETWORK or ip == ipaddress.IPv4Address(2**32 - 1)):
        return False
    if ip.is_loopback or ip.is_private or (isinstance(ip, ipaddress.IPv4Address) and ip in _CGNAT):
        return allow_private
    return ip.is_global


def resolve_destination(host: str, port: int, *, allow_private: bool) -> str:
    """The vetted IP to dial for ``host``. Every address the name resolves to must be allowed: a
    name that mixes public and internal addresses is refused as a whole."""
    name = host.strip().strip("[]").rstrip(".").lower()
    if not name:
        raise DestinationNotAllowed
    literal = _ip_literal(name)
    if literal is not None:
        addresses: list[IPAddress] = [literal]
    else:
        try:
            infos = socket.getaddrinfo(name, port, type=socket.SOCK_STREAM)
        except (OSError, UnicodeError):
            raise ResolutionFailed from None
        addresses = []
        for info in infos:
            address = ipaddress.ip_address(str(info[4][0]).split("%", 1)[0])
            if address not in addresses:
                addresses.append(address)
    if not addresses:
        raise ResolutionFailed
    if not all(address_allowed(a, allow_private=allow_private) for a in addresses):
        raise DestinationNotAllowed
    return str(addresses[0])


def url_allowed_literal(url: str, *, allow_private: bool) -> bool:
    """Form-time check without DNS: is the URL http(s) and, if its host is an address literal
    (in any spelling) or localhost, an allowed one? The real check runs again at send time."""
    try:
        parsed = httpx.URL(url)
    except (httpx.InvalidURL, UnicodeError):
        return False
    if parsed.scheme not in ("http", "https") or not parsed.host:
        return False
    name = parsed.host.rstrip(".").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return allow_private
    try:
        literal = _ip_literal(name)
    except DestinationNotAllowed:
        return False
    return literal is None or address_allowed(literal, allow_private=allow_private)


def outbound_allow_private() -> bool:
    """Whether tenant-chosen URLs may reach loopback and private ranges (development and tests).
    ``WEBHOOK_ALLOW_PRIVATE`` is the older name of the same switch and is still honoured."""
    return bool(getattr(settings, "OUTBOUND_ALLOW_PRIVATE", False) or getattr(settings, "WEBHOOK_ALLOW_PRIVATE", False))


TENANT_URL_REFUSED = (
    "That address is not allowed: use a public http(s) URL "
    "(loopback, private and link-local addresses such as 127.0.0.1, 10.x, 192.168.x or 169.254.x are refused)."
)


def tenant_url_refusal(url: str) -> str | None:
    """Why a tenant-chosen URL cannot be saved, or None. The same rules as webhook URLs, checked
    without DNS; the pinned transport checks the resolved address again on every request."""
    if not url_allowed_literal(url, allow_private=outbound_allow_private()):
        return TENANT_URL_REFUSED
    return None


# --- the pinned, deadline-bound connection ----------------------------------------------------


class _DeadlineStream(httpcore.NetworkStream):
    """Clamps every socket operation to what is left of one overall deadline, so a receiver that
    drips a byte at a time still cannot hold a worker past the timeout."""

    def __init__(self, stream: httpcore.NetworkStream, deadline: float) -> None:
        self._stream = stream
        self._deadline = deadline

    def _left(self, timeout: float | None, exc: type[Exception]) -> float:
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise exc("deadline reached")
        return left if timeout is None else min(timeout, left)

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        return self._stream.read(max_bytes, self._left(timeout, httpcore.ReadTimeout))

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        self._stream.write(buffer, self._left(timeout, httpcore.WriteTimeout))

    def close(self) -> None:
        self._stream.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore.NetworkStream:
        upgraded = self._stream.start_tls(ssl_context, server_hostname, self._left(timeout, httpcore.ConnectTimeout))
        return _DeadlineStream(upgraded, self._deadline)

    def get_extra_info(self, info: str) -> Any:
        return self._stream.get_extra_info(info)


class _PinnedBackend(httpcore.NetworkBackend):
    """Resolves and vets the host itself, then dials the vetted IP. httpcore keeps using the URL's
    host name for SNI and certificate checks, and httpx for the Host header."""

    def __init__(self, *, allow_private: bool, deadline: float) -> None:
        self._inner = httpcore.SyncBackend()
        self._allow_private = allow_private
        self._deadline = deadline

    def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.NetworkStream:
        ip = resolve_destination(host, port, allow_private=self._allow_private)
        left = self._deadline - time.monotonic()
        if left <= 0:
            raise httpcore.ConnectTimeout("deadline reached")
        stream = self._inner.connect_tcp(
            ip,
            port,
            timeout=left if timeout is None else min(timeout, left),
            local_address=local_address,
            socket_options=socket_options,
        )
        return _DeadlineStream(stream, self._deadline)

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.NetworkStream:
        raise DestinationNotAllowed

    def sleep(self, seconds: float) -> None:
        time.sleep(seconds)


class PinnedTransport(httpx.HTTPTransport):
    """An httpx transport for one request: no proxies, no retries, a pinned vetted address."""

    def __init__(self, *, allow_private: bool, timeout: float) -> None:
        super().__init__(trust_env=False, retries=0)
        self._pool = httpcore.ConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=1,
            http1=True,
            http2=False,
            retries=0,
            network_backend=_PinnedBackend(allow_private=allow_private, deadline=time.monotonic() + timeout),
        )


def pinned_client(*, allow_private: bool, deadline: float, timeout: httpx.Timeout | float) -> httpx.Client:
    """A client for one exchange through the guard: ``deadline`` seconds from now bound the whole
    of it (connect, send, every read), ``timeout`` each single operation. Never follows redirects
    and never uses proxies from the environment."""
    transport = PinnedTransport(allow_private=allow_private, timeout=deadline)
    return httpx.Client(transport=transport, follow_redirects=False, trust_env=False, timeout=timeout)


@dataclass(frozen=True)
class HttpReply:
    status_code: int
    headers: Mapping[str, str]
    excerpt: str


def http_post(*, url: str, body: bytes, headers: Mapping[str, str], timeout: float | None = None) -> HttpReply:
    """POST ``body`` to ``url`` through the guard. Raises DestinationNotAllowed, ResolutionFailed,
    httpx.InvalidURL or httpx.HTTPError; never follows a redirect."""
    timeout = float(settings.WEBHOOK_TIMEOUT if timeout is None else timeout)
    parsed = httpx.URL(url)
    if parsed.scheme not in ("http", "https") or not parsed.host:
        raise DestinationNotAllowed
    with (
        pinned_client(allow_private=outbound_allow_private(), deadline=timeout, timeout=timeout) as client,
        client.stream("POST", parsed, content=body, headers=dict(headers)) as response,
    ):
        received = bytearray()
        for chunk in response.iter_raw():
            received.extend(chunk)
            if len(received) >= RESPONSE_EXCERPT_BYTES:
                break
        excerpt = bytes(received[:RESPONSE_EXCERPT_BYTES]).decode("utf-8", errors="replace")
        return HttpReply(status_code=response.status_code, headers=dict(response.headers), excerpt=excerpt)
