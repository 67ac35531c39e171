"""Who may open a socket: a ``Host`` we serve and an ``Origin`` that is exactly one of ours.

Browsers send cookies with a cross-site WebSocket upgrade, so the ``Origin`` check is what keeps
another site from opening an agent's console socket in the agent's name (and from opening widget
sockets from pages that are not our frame). Channels' ``AllowedHostsOriginValidator`` compared host
names only: ``http://`` next to an ``https://`` site, or another port on the same host, passed,
and the ``Host`` header of an upgrade was never checked at all.

Accepted origins, each compared as scheme, host and port exactly:

* the public URL's origin (``PIVRA_PUBLIC_URL``): the console and the widget frame are served there;
* ``PIVRA_CSRF_TRUSTED_ORIGINS``: origins already trusted to post forms to the console;
* the socket's own origin as reached — its scheme (``wss`` is ``https``, after the proxy's
  ``X-Forwarded-Proto``) and its ``Host``, which must be in ``ALLOWED_HOSTS``. That is the web's
  same-origin rule (and Django's CSRF origin check): a page of ours under another allowed name,
  e.g. ``localhost`` next to ``127.0.0.1``, still connects; a page anywhere else never does. With
  an https public URL, only an https own origin counts.
"""

from __future__ import annotations

from collections.abc import Awaitable
from typing import Any
from urllib.parse import urlsplit

from channels.security.websocket import WebsocketDenier
from django.conf import settings
from django.http.request import split_domain_port, validate_host

DEFAULT_PORTS = {"http": 80, "https": 443}


def exact_origin(value: str) -> tuple[str, str, int] | None:
    """``"https://Chat.example.com"`` → ``("https", "chat.example.com", 443)``; None for anything that
    is not a bare http(s) origin (``null``, a path, a user part, a bad port)."""
    try:
        parts = urlsplit(value.strip())
        port = parts.port
    except ValueError:
        return None
    if parts.scheme not in DEFAULT_PORTS or not parts.hostname or parts.username or parts.password:
        return None
    if parts.path not in ("", "/") or parts.query or parts.fragment:
        return None
    return parts.scheme, parts.hostname.lower(), port or DEFAULT_PORTS[parts.scheme]


def _header(scope: dict[str, Any], name: bytes) -> str | None:
    for key, value in scope.get("headers") or []:
        if key.lower() == name:
            return value.decode("latin-1")
    return None


def _allowed_hosts() -> list[str]:
    # As Django's HttpRequest.get_host: with DEBUG on and no list, local names only.
    hosts = list(settings.ALLOWED_HOSTS)
    if settings.DEBUG and not hosts:
        hosts = [".localhost", "127.0.0.1", "[::1]"]
    return hosts


def socket_host(scope: dict[str, Any]) -> str | None:
    """The upgrade's ``Host`` header when it names a host we serve, else None."""
    host = _header(scope, b"host")
    if not host:
        return None
    domain, _port = split_domain_port(host)
    if not domain or not validate_host(domain, _allowed_hosts()):
        return None
    return host


def socket_origin_allowed(scope: dict[str, Any]) -> bool:
    host = socket_host(scope)
    if host is None:
        return False
    origin = exact_origin(_header(scope, b"origin") or "")
    if origin is None:
        return False
    public = exact_origin(settings.PUBLIC_URL)
    allowed = {public, *(exact_origin(trusted) for trusted in settings.CSRF_TRUSTED_ORIGINS)}
    scheme = "https" if scope.get("scheme", "ws") in ("wss", "https") else "http"
    # Never a downgrade: with an https public URL, a plain-http page (one a network attacker could
    # have written) opens no socket, not even on our own host.
    if scheme == "https" or (public is not None and public[0] == "http"):
        allowed.add(exact_origin(f"{scheme}://{host}"))
    return origin in allowed


class PublicOriginValidator:
    """ASGI middleware for the socket routes: refuses the upgrade (HTTP 403) unless the ``Host`` is one
    of ``ALLOWED_HOSTS`` and the ``Origin`` is exactly one of ours (see the module docstring)."""

    # A plain callable handing on the next awaitable: no coroutine per connection (pivra/asgi_layers.py).
    _asgi_single_callable = True

    def __init__(self, application: Any) -> None:
        self.application = application

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        if scope.get("type") != "websocket":
            raise ValueError("PublicOriginValidator guards WebSocket connections only")
        if socket_origin_allowed(scope):
            return self.application(scope, receive, send)
        denied: Awaitable[Any] = WebsocketDenier()(scope, receive, send)
        return denied
