"""Which push endpoints the server will ever dial: the browser vendors' push services, nothing else.

An endpoint is a URL the browser hands the page, so for the server it is attacker input: without a
list, any signed-in user could make the server POST (VAPID-signed) to any public host and port. Only
https on the default port to a host of ``settings.WEB_PUSH_HOSTS`` passes (``*.example`` is any
subdomain of example); where private addresses are allowed (development and tests,
``PIVRA_OUTBOUND_ALLOW_PRIVATE``) loopback too, over http or https on any port. Checked when a
subscription is saved and again before every send (an old row, a changed setting).
"""

from __future__ import annotations

import ipaddress
import re
from urllib.parse import urlsplit

from django.conf import settings

# Printable ASCII only: real endpoints are, and a long non-ASCII one overflows PostgreSQL's btree
# limit on the unique index (a 500 instead of a refusal).
ENDPOINT_PATTERN = r"^[\x21-\x7e]{1,1000}$"
_ENDPOINT = re.compile(ENDPOINT_PATTERN)


def _host_listed(host: str, hosts: tuple[str, ...]) -> bool:
    for pattern in hosts:
        if pattern.startswith("*."):
            if host.endswith(pattern[1:]) and len(host) > len(pattern) - 1:
                return True
        elif host == pattern:
            return True
    return False


def _loopback(host: str) -> bool:
    if host == "localhost" or host.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def endpoint_allowed(endpoint: str, *, allow_private: bool) -> bool:
    """Is ``endpoint`` a URL the server may POST a push to?"""
    if not _ENDPOINT.fullmatch(endpoint):
        return False
    try:
        parts = urlsplit(endpoint)
        port = parts.port
    except ValueError:
        return False
    host = (parts.hostname or "").rstrip(".").lower()
    if not host or parts.username is not None or parts.password is not None or "@" in parts.netloc:
        return False
    if allow_private and _loopback(host) and parts.scheme in ("http", "https"):
        return True
    if parts.scheme != "https" or port not in (None, 443):
        return False
    return _host_listed(host, tuple(getattr(settings, "WEB_PUSH_HOSTS", ())))
