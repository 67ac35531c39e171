"""One Web Push message to one browser: encrypted and signed here, sent through ``pivra.outbound``.

pywebpush builds the RFC 8291 ``aes128gcm`` body (``WebPusher.encode``) and py_vapid the RFC 8292
``Authorization: vapid t=…, k=…`` header, but the POST goes through the project's outbound door,
never pywebpush's own ``requests`` call: an endpoint is a URL the browser (so, anyone signed in)
chose, and the door refuses loopback, private and link-local addresses after resolving the name,
dials the vetted address, follows no redirect and keeps to a hard deadline.

The push service's answer decides what happens to the subscription. Only the subscription's own
permanent failures count: 400 and 413 (a request this subscription cannot take) and 403 that is not
about the VAPID signature; ``MAX_FAILURES`` of them in a row delete it, and 404/410 (RFC 8030: expired
or unsubscribed) delete it at once. What says nothing about the subscription — a DNS failure, a
timeout, 429, 5xx — is logged and not counted, so an outage of a push service deletes nobody's
subscription. 401, and a 403 naming the VAPID key, point at the server's keys (a key changed without
the browsers subscribing again): logged once per process, not counted. 2xx resets the count. Logs
name the push service's host and the status only — never the endpoint's path (a capability), the
keys or the message.
"""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import urlsplit

import httpx
from django.conf import settings
from django.db.models import F
from django.utils import timezone
from py_vapid import Vapid02
from pywebpush import WebPusher

from notifications.endpoints import endpoint_allowed
from notifications.models import PushSubscription
from notifications.vapid import private_key_from_raw
from pivra import outbound

logger = logging.getLogger(__name__)

# One attempt's hard deadline (connect, send, answer): push services answer in well under a second,
# and only the listed push services are ever dialled, so no tenant can hold the queue with a slow one.
PUSH_TIMEOUT_SECONDS = 5.0
MAX_FAILURES = 5
PERMANENT = frozenset({400, 403, 413})
_VAPID_HINTS = ("vapid", "authorization", "crypto-key", "jwt", "sender id", "public key")
_vapid_warned: list[bool] = []
# How long a push service keeps a message for a browser that is offline: a waiting visitor is stale
# after a few minutes; a mention is worth reading the next morning.
TTL_SECONDS = {"handoff": 600, "message": 600, "mention": 86_400}
SENT, GONE, FAILED, LATER = "sent", "gone", "failed", "later"
# Messages in a live chat come often: delivered in the ordinary way; a waiting visitor or a mention at once.
URGENCY = {"message": "normal"}


def push_payload(*, kind: str, conversation_public_id: str, title: str, body: str, url: str) -> bytes:
    """What the service worker reads (static/console/notifications-sw.js); the tag coalesces per conversation."""
    return json.dumps(
        {"kind": kind, "title": title, "body": body, "tag": f"pivra-{conversation_public_id}", "url": url},
        separators=(",", ":"),
        ensure_ascii=False,
    ).encode()


def _vapid_headers(endpoint: str) -> dict[str, str]:
    parts = urlsplit(endpoint)
    claims = {"aud": f"{parts.scheme}://{parts.netloc}", "sub": settings.VAPID_SUBJECT, "exp": int(time.time()) + 3600}
    signed: dict[str, str] = Vapid02(private_key_from_raw(settings.VAPID_PRIVATE_KEY)).sign(claims)
    return signed


def push_request(*, subscription: PushSubscription, payload: bytes, kind: str) -> tuple[bytes, dict[str, str]]:
    """(encrypted body, headers) of the POST to the subscription's endpoint."""
    info = {"endpoint": subscription.endpoint, "keys": {"p256dh": subscription.p256dh, "auth": subscription.auth}}
    body: bytes = WebPusher(info).encode(payload, "aes128gcm")["body"]
    headers = {
        **_vapid_headers(subscription.endpoint),
        "Content-Encoding": "aes128gcm",
        "Content-Type": "application/octet-stream",
        "TTL": str(TTL_SECONDS.get(kind, 600)),
        "Urgency": URGENCY.get(kind, "high"),
    }
    return body, headers


def push_send(*, subscription: PushSubscription, payload: bytes, kind: str) -> str:
    """Send one message: SENT, GONE (deleted), FAILED (a permanent failure, counted) or LATER (a
    temporary one, not counted)."""
    host = urlsplit(subscription.endpoint).hostname or "?"
    try:
        if not endpoint_allowed(subscription.endpoint, allow_private=outbound.outbound_allow_private()):
            raise outbound.DestinationNotAllowed
        body, headers = push_request(subscription=subscription, payload=payload, kind=kind)
        reply = outbound.http_post(url=subscription.endpoint, body=body, headers=headers, timeout=PUSH_TIMEOUT_SECONDS)
    except outbound.DestinationNotAllowed:
        logger.warning("web push to %s refused: not an allowed push service or address", host)
        return _failed(subscription)
    except ValueError as exc:  # the stored keys cannot encrypt: this subscription's own fault
        logger.warning("web push to %s failed: %s", host, type(exc).__name__)
        return _failed(subscription)
    except (outbound.ResolutionFailed, httpx.HTTPError) as exc:
        logger.warning("web push to %s failed for now: %s", host, type(exc).__name__)
        return LATER
    status = reply.status_code
    if 200 <= status < 300:
        PushSubscription.objects.filter(pk=subscription.pk).update(failures=0, last_success_at=timezone.now())
        return SENT
    if status in (404, 410):
        PushSubscription.objects.filter(pk=subscription.pk).delete()
        logger.info("web push subscription at %s is gone (%s): deleted", host, status)
        return GONE
    if status == 401 or (status == 403 and any(hint in reply.excerpt.lower() for hint in _VAPID_HINTS)):
        if not _vapid_warned:
            _vapid_warned.append(True)
            logger.error(
                "web push to %s answered %s: the VAPID key may not be the one the browsers subscribed with "
                "(was PIVRA_VAPID_PRIVATE_KEY changed, or does each node generate its own?)",
                host,
                status,
            )
        return LATER
    if status in PERMANENT:
        logger.warning("web push to %s answered %s", host, status)
        return _failed(subscription)
    logger.warning("web push to %s answered %s: not counted against the subscription", host, status)
    return LATER


def _failed(subscription: PushSubscription) -> str:
    PushSubscription.objects.filter(pk=subscription.pk).update(failures=F("failures") + 1)
    PushSubscription.objects.filter(pk=subscription.pk, failures__gte=MAX_FAILURES).delete()
    return FAILED
