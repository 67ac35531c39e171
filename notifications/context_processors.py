"""What the console's notification script needs from the server, for every template."""

from __future__ import annotations

import hashlib

from django.conf import settings
from django.http import HttpRequest

from pivra.console.session_validity import session_digest


def web_push(request: HttpRequest) -> dict[str, str]:
    """The VAPID *public* key (the private one never leaves the server); empty when Web Push is off
    (PIVRA_WEB_PUSH=false), so the page offers browser notifications only and says why. And a tag of
    this session (a hash of its digest, never the key): the page saves its subscription again when
    the session changed (a new sign-in, a password change), since the server deleted it then."""
    session_key = getattr(getattr(request, "session", None), "session_key", None) or ""
    tag = hashlib.sha256(session_digest(session_key).encode()).hexdigest()[:16] if session_key else ""
    return {
        "vapid_public_key": settings.VAPID_PUBLIC_KEY if settings.WEB_PUSH_ENABLED else "",
        "push_session_tag": tag,
    }
