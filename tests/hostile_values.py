"""Values a probe sends, and the check every hostile-input test makes of the answer."""

from __future__ import annotations

from typing import Any

from django.http import StreamingHttpResponse

NUL = "nul\x00byte"
FIVE_THOUSAND_DIGITS = "9" * 5000
# Each is something a probe sends: a NUL byte, Unicode digits ("²".isdigit() is True, int("²")
# raises; int("٣") is 3), a number Python refuses to parse, far dates, broken origins, a negative.
HOSTILE = [
    NUL,
    "²",
    "٣",
    "١٢٣",
    FIVE_THOUSAND_DIGITS,
    "99999999999999999999",  # past a bigint
    "9999-12-31",
    "0001-01-01",
    "http://[::1",
    "https://[::1]:99999",
    "-1",
]


def read(response: Any) -> bytes:
    """The whole body; a streamed one is consumed to its end (a hang fails the test's timeout)."""
    if isinstance(response, StreamingHttpResponse):
        return b"".join(response.streaming_content)  # type: ignore[arg-type]
    return bytes(response.content)


def check(response: Any, value: str, what: str) -> None:
    body = read(response)
    assert response.status_code < 500, f"{what} with {value[:30]!r}: {response.status_code} {body[:300]!r}"
    if "\x00" in value:
        assert 400 <= response.status_code < 500, f"{what} accepted a NUL: {response.status_code}"
