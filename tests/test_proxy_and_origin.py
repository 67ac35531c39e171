"""Who the client is and where a socket comes from: the trusted proxy hop of X-Forwarded-For, the
exact public origin of both sockets, and the Host of every upgrade — against the real ASGI app."""

from __future__ import annotations

import io
from typing import Any

import pytest
from asgiref.testing import ApplicationCommunicator
from channels.testing import WebsocketCommunicator
from django.core.handlers.asgi import ASGIRequest

from pivra import health
from pivra.asgi import application
from pivra.proxy import ProxyHeadersMiddleware, forwarded_client

pytestmark = pytest.mark.django_db(transaction=True)
PEER = ("127.0.0.1", 50_000)  # the proxy, on the same machine


@pytest.fixture
def behind_proxy(settings: Any) -> Any:
    settings.BEHIND_PROXY = True
    settings.PROXY_HOPS = 1
    return settings


class _Capture:
    """An inner ASGI app that records the scope it was handed."""

    scope: dict[str, Any]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        self.scope = scope


async def _seen_by_the_app(
    headers: list[tuple[bytes, bytes]], *, kind: str = "http", peer: tuple[str, int] | None = PEER
) -> dict[str, Any]:
    inner = _Capture()
    scope = {
        "type": kind,
        "path": "/",
        "headers": headers,
        "client": peer,
        "scheme": "ws" if kind != "http" else "http",
    }
    await ProxyHeadersMiddleware(inner)(scope, None, None)
    return inner.scope


async def test_one_hop_takes_the_address_the_proxy_saw_never_the_leftmost(behind_proxy: Any) -> None:
    for kind in ("http", "websocket"):
        scope = await _seen_by_the_app([(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9")], kind=kind)
        assert scope["client"][0] == "203.0.113.9"
    # Django's REMOTE_ADDR (the rate limits, the login throttle) follows the rewritten scope.
    scope = await _seen_by_the_app([(b"x-forwarded-for", b"6.6.6.6, 203.0.113.9")])
    request = ASGIRequest({**scope, "method": "GET", "query_string": b""}, io.BytesIO())
    assert request.META["REMOTE_ADDR"] == "203.0.113.9"


async def test_hops_count_from_the_right_across_repeated_headers(behind_proxy: Any) -> None:
    behind_proxy.PROXY_HOPS = 2
    headers = [(b"x-forwarded-for", b"6.6.6.6, 198.51.100.7"), (b"X-Forwarded-For", b"10.0.0.2")]
    assert (await _seen_by_the_app(headers))["client"][0] == "198.51.100.7"
    # Fewer entries than hops: the furthest one any of our proxies wrote.
    assert (await _seen_by_the_app([(b"x-forwarded-for", b"198.51.100.7")]))["client"][0] == "198.51.100.7"


def test_addresses_with_ports_are_read_and_garbage_is_ignored() -> None:
    def client(value: bytes) -> str | None:
        return forwarded_client([(b"x-forwarded-for", value)], hops=1)

    assert client(b"203.0.113.9:4711") == "203.0.113.9"
    assert client(b"[2001:db8::1]:443") == "2001:db8::1"
    assert client(b"2001:db8::1") == "2001:db8::1"
    assert client(b"unknown") is None
    assert client(b"") is None


async def test_without_behind_proxy_the_headers_are_ignored_entirely(settings: Any) -> None:
    settings.BEHIND_PROXY = False
    scope = await _seen_by_the_app([(b"x-forwarded-for", b"203.0.113.9"), (b"x-forwarded-proto", b"https")])
    assert scope["client"] == PEER and scope["scheme"] == "http"


async def test_the_forwarded_scheme_reaches_sockets_as_wss(behind_proxy: Any) -> None:
    scope = await _seen_by_the_app([(b"x-forwarded-proto", b"https")], kind="websocket")
    assert scope["scheme"] == "wss" and scope["client"] == PEER


async def _healthz_detail_shown(headers: list[tuple[bytes, bytes]], *, peer: tuple[str, int] = PEER) -> bool:
    """Through the whole ASGI app: /healthz shows its detail to loopback clients only."""
    scope = {
        "type": "http",
        "http_version": "1.1",
        "method": "GET",
        "path": "/healthz",
        "query_string": b"",
        "headers": [(b"host", b"127.0.0.1:8000"), *headers],
        "client": peer,
        "scheme": "http",
    }
    app = ApplicationCommunicator(application, scope)
    await app.send_input({"type": "http.request", "body": b""})
    start = await app.receive_output(timeout=10)
    body = b""
    while True:
        chunk = await app.receive_output(timeout=10)
        body += chunk.get("body", b"")
        if not chunk.get("more_body"):
            break
    await app.wait(timeout=10)  # let the request finish: it hands its database connection back
    assert start["status"] in (200, 503), body
    return b'"checks"' in body


async def test_a_spoofed_loopback_address_does_not_pass_for_loopback(
    behind_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "_worker", lambda: {"workers": ["w"]})
    health.worker_snapshot.clear()
    try:
        assert await _healthz_detail_shown([]) is True  # the proxy's own probe, on loopback
        assert await _healthz_detail_shown([(b"x-forwarded-for", b"127.0.0.1, 203.0.113.9")]) is False
        assert await _healthz_detail_shown([(b"x-forwarded-for", b"203.0.113.9, 127.0.0.1")]) is True
        behind_proxy.BEHIND_PROXY = False
        assert await _healthz_detail_shown([(b"x-forwarded-for", b"203.0.113.9")]) is True  # header ignored
    finally:
        health.worker_snapshot.clear()


async def test_forwarded_headers_count_only_from_a_trusted_proxy(behind_proxy: Any) -> None:
    # Someone who reaches daphne directly, from a public address, cannot name their own address…
    outsider = ("198.51.100.66", 40_000)
    for spoofed in (b"127.0.0.1", b"203.0.113.1", b"203.0.113.2"):
        for kind in ("http", "websocket"):
            headers = [(b"x-forwarded-for", spoofed), (b"x-forwarded-proto", b"https")]
            scope = await _seen_by_the_app(headers, kind=kind, peer=outsider)
            assert scope["client"] == outsider  # one address, one rate-limit bucket, however they vary it
            assert scope["scheme"] in ("http", "ws")
            # … and Django's SECURE_PROXY_SSL_HEADER does not see their X-Forwarded-Proto either.
            assert [key for key, _ in scope["headers"] if key.startswith(b"x-forwarded")] == []
    # The default ranges: loopback and private networks, an IPv4 peer on an IPv6 socket included.
    for proxy in ("10.1.2.3", "172.20.0.5", "192.168.1.10", "::1", "fd00::7", "::ffff:10.0.0.2"):
        scope = await _seen_by_the_app([(b"x-forwarded-for", b"203.0.113.9")], peer=(proxy, 1))
        assert scope["client"][0] == "203.0.113.9", proxy
    # A Unix socket (no client address) is only reachable from this machine.
    scope = await _seen_by_the_app([(b"x-forwarded-for", b"203.0.113.9")], peer=None)
    assert scope["client"][0] == "203.0.113.9"
    # A proxy on a public address is trusted once listed; the listed set replaces the default.
    behind_proxy.TRUSTED_PROXIES = ["198.51.100.0/24"]
    assert (await _seen_by_the_app([(b"x-forwarded-for", b"203.0.113.9")], peer=outsider))["client"][0] == (
        "203.0.113.9"
    )
    assert (await _seen_by_the_app([(b"x-forwarded-for", b"203.0.113.9")]))["client"] == PEER


async def test_a_direct_client_cannot_pass_for_loopback_at_healthz(
    behind_proxy: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(health, "_worker", lambda: {"workers": ["w"]})
    health.worker_snapshot.clear()
    try:
        outsider = ("198.51.100.66", 40_000)
        assert await _healthz_detail_shown([(b"x-forwarded-for", b"127.0.0.1")], peer=outsider) is False
        assert await _healthz_detail_shown([(b"x-forwarded-for", b"127.0.0.1")]) is True  # via our proxy
    finally:
        health.worker_snapshot.clear()


# --- the sockets' Origin and Host ------------------------------------------------------------


async def _opens(path: str, headers: list[tuple[bytes, bytes]], *, scheme: str = "ws") -> bool:
    socket = WebsocketCommunicator(application, path, headers=headers)
    socket.scope["scheme"] = scheme
    connected, _ = await socket.connect(timeout=5)
    await socket.disconnect()
    return connected


def _upgrade(origin: bytes, host: bytes = b"127.0.0.1:8000") -> list[tuple[bytes, bytes]]:
    return [(b"origin", origin), (b"host", host)]


@pytest.mark.parametrize("path", ["/ws/console/", "/ws/widget/"])
async def test_only_the_exact_public_origin_opens_a_socket(path: str, settings: Any) -> None:
    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    assert await _opens(path, _upgrade(b"http://127.0.0.1:8000"))
    assert not await _opens(path, _upgrade(b"https://127.0.0.1:8000"))  # wrong scheme
    assert not await _opens(path, _upgrade(b"http://127.0.0.1:9999"))  # wrong port
    assert not await _opens(path, _upgrade(b"http://127.0.0.1"))  # wrong (default) port
    assert not await _opens(path, _upgrade(b"http://localhost:8000"))  # an allowed host, not this origin
    assert not await _opens(path, _upgrade(b"https://evil.example"))
    assert not await _opens(path, _upgrade(b"null"))
    assert not await _opens(path, [(b"host", b"127.0.0.1:8000")])  # no Origin at all


@pytest.mark.parametrize("path", ["/ws/console/", "/ws/widget/"])
async def test_the_host_of_an_upgrade_must_be_one_we_serve(path: str, settings: Any) -> None:
    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    assert not await _opens(path, _upgrade(b"http://127.0.0.1:8000", host=b"evil.example"))
    assert not await _opens(path, _upgrade(b"http://127.0.0.1:8000", host=b"evil.example:8000"))
    assert not await _opens(path, [(b"origin", b"http://127.0.0.1:8000")])  # no Host at all


async def test_an_https_site_accepts_its_own_origin_and_nothing_plain(settings: Any) -> None:
    settings.PUBLIC_URL = "https://chat.example.com"
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    good = _upgrade(b"https://chat.example.com", host=b"chat.example.com")
    assert await _opens("/ws/console/", good, scheme="wss")
    assert await _opens("/ws/console/", _upgrade(b"https://chat.example.com:443", host=b"chat.example.com"))
    assert not await _opens("/ws/console/", _upgrade(b"http://chat.example.com", host=b"chat.example.com"))
    assert not await _opens("/ws/console/", _upgrade(b"https://chat.example.com:8443", host=b"chat.example.com"))
    assert not await _opens("/ws/console/", _upgrade(b"https://x.chat.example.com", host=b"chat.example.com"))


async def test_the_same_origin_under_another_served_name_still_connects(settings: Any) -> None:
    # The frame served as http://localhost:8000 (an allowed host) talks to its own socket there.
    settings.PUBLIC_URL = "http://127.0.0.1:8000"
    settings.ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
    assert await _opens("/ws/widget/", _upgrade(b"http://localhost:8000", host=b"localhost:8000"))
    assert not await _opens("/ws/widget/", _upgrade(b"https://localhost:8000", host=b"localhost:8000"))
    # Trusted origins (PIVRA_CSRF_TRUSTED_ORIGINS) are accepted exactly too.
    settings.CSRF_TRUSTED_ORIGINS = ["https://admin.example.com"]
    assert await _opens("/ws/console/", _upgrade(b"https://admin.example.com"))
    assert not await _opens("/ws/console/", _upgrade(b"http://admin.example.com"))


async def test_behind_a_proxy_the_socket_scheme_comes_from_x_forwarded_proto(behind_proxy: Any) -> None:
    behind_proxy.PUBLIC_URL = "https://chat.example.com"
    behind_proxy.ALLOWED_HOSTS = ["chat.example.com", "localhost"]
    forwarded = [(b"x-forwarded-proto", b"https"), (b"x-forwarded-for", b"203.0.113.9")]
    # The proxy talks plain ws to daphne; the browser's page is https://localhost (same-origin rule).
    assert await _opens("/ws/widget/", [*_upgrade(b"https://localhost", host=b"localhost"), *forwarded])
    assert not await _opens("/ws/widget/", _upgrade(b"https://localhost", host=b"localhost"))
