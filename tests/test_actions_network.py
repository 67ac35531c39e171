"""The SSRF guard: every internal address and spelling is refused, the vetted IP is pinned, no
redirect is followed, and every exchange has a deadline."""

from __future__ import annotations

import socket
from typing import Any

import httpx
import pytest

from actions import network
from actions.network import DestinationNotAllowed, address_allowed, http_post, resolve_destination
from actions.signing import secret_generate
from actions.transports import send_webhook
from tests.test_actions_support import Receiver, Reply

REFUSED_HOSTS = [
    "127.0.0.1",
    "127.8.9.10",
    "localhost",
    "localhost.",
    "127.0.0.1.",
    "10.0.0.1",
    "172.16.5.4",
    "172.31.255.255",
    "192.168.1.1",
    "169.254.169.254",  # cloud metadata
    "169.254.0.1",
    "100.64.0.1",  # carrier-grade NAT
    "100.127.255.254",
    "0.0.0.0",
    "0.1.2.3",
    "224.0.0.1",
    "239.255.255.250",
    "240.0.0.1",
    "255.255.255.255",
    "::1",
    "::",
    "fc00::1",
    "fd12:3456:789a::1",
    "fe80::1",
    "fe80::1%eth0",
    "ff02::1",
    "::ffff:127.0.0.1",
    "::ffff:7f00:1",
    "::ffff:169.254.169.254",
    "::ffff:10.0.0.1",
    "::127.0.0.1",
    "64:ff9b::7f00:1",  # NAT64 of 127.0.0.1
    "2002:7f00:1::",  # 6to4 of 127.0.0.1
    "2130706433",  # decimal 127.0.0.1
    "017700000001",  # octal, one part
    "0177.0.0.1",  # octal
    "0x7f.1",  # hex, short
    "0x7f000001",
    "0x7f.0x0.0x0.0x1",
    "127.1",  # short form
    "127.0.1",
    "0",
    "3232235777",  # 192.168.1.1
    "0xa9.0xfe.0xa9.0xfe",  # 169.254.169.254
    "999.1.1.1",  # numeric but out of range
]


@pytest.mark.parametrize("host", REFUSED_HOSTS)
def test_it_refuses_every_internal_address_and_spelling(host: str) -> None:
    with pytest.raises(DestinationNotAllowed) as caught:
        resolve_destination(host, 80, allow_private=False)
    assert str(caught.value) == "destination not allowed"


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/",
        "http://localhost:8000/x",
        "http://[::1]/",
        "http://[::ffff:127.0.0.1]/",
        "http://[::ffff:a9fe:a9fe]/latest/meta-data/",
        "http://2130706433/",
        "http://0177.0.0.1/",
        "http://0x7f.1/",
        "http://127.1/",
        "http://127.0.0.1./",
        "https://169.254.169.254/latest/meta-data/",
        "http://user:pass@10.1.2.3:8080/",
        "http://LOCALHOST/",
    ],
)
def test_a_post_to_an_internal_url_never_leaves_and_names_nothing(url: str, settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = False
    result = send_webhook(url=url, payload={"a": 1}, msg_id="msg_1", secrets=[secret_generate()])
    assert not result.succeeded
    # httpx itself rejects a few spellings (0177.0.0.1) as malformed before the guard sees them.
    assert result.error in ("destination not allowed", "invalid URL")
    assert "127" not in result.error and "169.254" not in result.error and "10.1" not in result.error


@pytest.mark.parametrize("url", ["ftp://example.com/", "file:///etc/passwd", "gopher://example.com/"])
def test_only_http_and_https_are_sent(url: str) -> None:
    with pytest.raises((DestinationNotAllowed, httpx.UnsupportedProtocol, httpx.InvalidURL)):
        http_post(url=url, body=b"{}", headers={})


@pytest.mark.parametrize("host", ["93.184.216.34", "8.8.8.8", "2606:4700:4700::1111", "1.1.1.1"])
def test_public_addresses_are_allowed(host: str) -> None:
    assert resolve_destination(host, 443, allow_private=False) == host


def test_allow_private_opens_loopback_and_private_but_never_metadata_or_multicast() -> None:
    assert resolve_destination("127.0.0.1", 80, allow_private=True) == "127.0.0.1"
    assert resolve_destination("10.1.2.3", 80, allow_private=True) == "10.1.2.3"
    assert resolve_destination("2130706433", 80, allow_private=True) == "127.0.0.1"
    for host in ("169.254.169.254", "::ffff:169.254.169.254", "224.0.0.1", "0.0.0.0", "fe80::1"):
        with pytest.raises(DestinationNotAllowed):
            resolve_destination(host, 80, allow_private=True)


def test_a_name_resolving_to_any_internal_address_is_refused_as_a_whole(monkeypatch: pytest.MonkeyPatch) -> None:
    """DNS that answers one public and one private address must not get through."""

    def fake(host: str, port: int, *args: Any, **kwargs: Any) -> list[Any]:
        return [
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("93.184.216.34", port)),
            (socket.AF_INET, socket.SOCK_STREAM, 6, "", ("10.0.0.7", port)),
        ]

    monkeypatch.setattr(network.socket, "getaddrinfo", fake)
    with pytest.raises(DestinationNotAllowed):
        resolve_destination("mixed.example.test", 443, allow_private=False)


def test_address_allowed_treats_embedded_ipv4_like_the_ipv4_itself() -> None:
    import ipaddress

    assert not address_allowed(ipaddress.ip_address("::ffff:192.168.0.1"))
    assert address_allowed(ipaddress.ip_address("::ffff:93.184.216.34"))


def test_the_resolved_ip_is_pinned_and_the_original_host_header_kept(
    monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    """The connection goes to the address that was vetted, while the receiver still sees its own
    host name (so virtual hosts and TLS SNI keep working)."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    looked_up: list[str] = []
    real = socket.getaddrinfo

    def fake(host: str, port: int, *args: Any, **kwargs: Any) -> Any:
        looked_up.append(host)
        return real("127.0.0.1", port, *args, **kwargs)

    monkeypatch.setattr(network.socket, "getaddrinfo", fake)
    with Receiver() as receiver:
        reply = http_post(url=f"http://hooks.example.test:{receiver.port}/in", body=b'{"a":1}', headers={})
    assert reply.status_code == 200
    # The name is resolved once, by the guard; the socket is opened to the vetted IP literal.
    assert looked_up.count("hooks.example.test") == 1
    assert set(looked_up) <= {"hooks.example.test", "127.0.0.1"}
    (hit,) = receiver.hits
    assert hit.headers["host"] == f"hooks.example.test:{receiver.port}"
    assert hit.body == b'{"a":1}'


def test_a_redirect_is_not_followed(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver(Reply(302, {"Location": "/elsewhere"}, b"")) as receiver:
        reply = http_post(url=receiver.url, body=b"{}", headers={})
    assert reply.status_code == 302
    assert [h.path for h in receiver.hits] == ["/hook"]


def test_a_receiver_that_never_answers_times_out(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver(hold_first=True) as receiver, pytest.raises(httpx.TimeoutException):
        http_post(url=receiver.url, body=b"{}", headers={}, timeout=1)


def test_an_unresolvable_name_reads_like_any_refused_one_when_private_is_not_allowed(settings: Any) -> None:
    """Otherwise the log would tell a customer which internal names resolve on our servers."""
    secrets = [secret_generate()]
    settings.WEBHOOK_ALLOW_PRIVATE = False
    unknown = send_webhook(url="https://pivra-no-such-host.invalid/hook", payload={}, msg_id="msg_1", secrets=secrets)
    internal = send_webhook(url="http://localhost:9/hook", payload={}, msg_id="msg_1", secrets=secrets)
    assert not unknown.succeeded and not internal.succeeded
    assert unknown.error == internal.error == "destination not allowed"
    settings.WEBHOOK_ALLOW_PRIVATE = True  # local development: the plain reason helps
    unknown = send_webhook(url="https://pivra-no-such-host.invalid/hook", payload={}, msg_id="msg_1", secrets=secrets)
    assert unknown.error == "could not resolve the host name"
