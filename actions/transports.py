"""Send one delivery attempt: a signed webhook, a Slack message or an email.

Transports do I/O only and never touch the database; they turn every outcome into an
``AttemptResult`` (the delivery service decides what happens next). Error texts are stored in the
delivery log the customer reads, so they are short and never name an internal address.
"""

from __future__ import annotations

import json
import smtplib
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from email.utils import parsedate_to_datetime
from typing import Any

import httpx
from django.conf import settings
from django.utils import timezone

from actions.messages import event_email, slack_message, summarize
from actions.signing import signed_headers
from pivra.outbound import NOT_ALLOWED, DestinationNotAllowed, ResolutionFailed, http_post, outbound_allow_private

USER_AGENT = "Pivra-Webhooks/1.0"
MAX_RETRY_AFTER_SECONDS = 86_400


@dataclass(frozen=True)
class AttemptResult:
    succeeded: bool
    duration_ms: int
    status_code: int | None = None
    error: str = ""
    response_excerpt: str = ""
    retry_after: float | None = None  # seconds the receiver asked us to wait
    gone: bool = False  # HTTP 410: the receiver says this endpoint is gone for good
    permanent: bool = False  # retrying cannot help (e.g. the URL or secret cannot be decrypted)


def parse_retry_after(value: str | None, *, now: datetime | None = None) -> float | None:
    """``Retry-After`` as seconds (delta-seconds or an HTTP date), capped at a day."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError, IndexError):
            return None
        if when.tzinfo is None:
            when = when.replace(tzinfo=UTC)
        seconds = (when - (now or timezone.now())).total_seconds()
    return min(max(seconds, 0.0), float(MAX_RETRY_AFTER_SECONDS))


def encode_body(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _post(url: str, body: bytes, headers: dict[str, str]) -> AttemptResult:
    started = time.monotonic()

    def took() -> int:
        return int((time.monotonic() - started) * 1000)

    base = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "Accept-Encoding": "identity",
    }
    try:
        reply = http_post(url=url, body=body, headers={**base, **headers})
    except DestinationNotAllowed:
        return AttemptResult(False, took(), error=NOT_ALLOWED)
    except ResolutionFailed:
        # Telling "does not resolve" from "not allowed" would let a customer probe which internal
        # names resolve on our servers; the distinction is only given where private is allowed.
        error = "could not resolve the host name" if outbound_allow_private() else NOT_ALLOWED
        return AttemptResult(False, took(), error=error)
    except httpx.InvalidURL:
        return AttemptResult(False, took(), error="invalid URL")
    except httpx.TimeoutException:
        return AttemptResult(False, took(), error=f"timed out after {settings.WEBHOOK_TIMEOUT:g} s")
    except httpx.ConnectError:
        return AttemptResult(False, took(), error="could not connect")
    except (httpx.HTTPError, OSError) as exc:
        return AttemptResult(False, took(), error=f"request failed ({type(exc).__name__})")
    status = reply.status_code
    if 200 <= status < 300:
        return AttemptResult(True, took(), status_code=status, response_excerpt=reply.excerpt)
    if 300 <= status < 400:
        error = f"redirect (HTTP {status}) not followed: use the final URL"
    elif status == 410:
        error = "HTTP 410 Gone: the receiver retired this endpoint"
    else:
        error = f"HTTP {status}"
    return AttemptResult(
        False,
        took(),
        status_code=status,
        error=error,
        response_excerpt=reply.excerpt,
        retry_after=parse_retry_after(reply.headers.get("retry-after")),
        gone=status == 410,
    )


def send_webhook(*, url: str, payload: dict[str, Any], msg_id: str, secrets: list[str]) -> AttemptResult:
    body = encode_body(payload)
    timestamp = int(timezone.now().timestamp())
    return _post(url, body, signed_headers(msg_id=msg_id, timestamp=timestamp, body=body, secrets=secrets))


def send_slack(*, url: str, payload: dict[str, Any], is_test: bool) -> AttemptResult:
    return _post(url, encode_body(slack_message(summarize(payload, is_test=is_test))), {})


def send_email(*, recipients: list[str], payload: dict[str, Any], is_test: bool) -> AttemptResult:
    started = time.monotonic()
    message = event_email(summary=summarize(payload, is_test=is_test), recipients=recipients)
    try:
        message.send(fail_silently=False)
    except smtplib.SMTPRecipientsRefused:
        error, code = "the mail server refused every recipient", None
    except smtplib.SMTPResponseException as exc:
        error, code = f"the mail server answered {exc.smtp_code}", exc.smtp_code
    except (smtplib.SMTPException, OSError):
        error, code = "could not reach the mail server", None
    else:
        return AttemptResult(True, int((time.monotonic() - started) * 1000))
    return AttemptResult(False, int((time.monotonic() - started) * 1000), status_code=code, error=error)
