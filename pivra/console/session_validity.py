"""Whether the session an open console socket was opened with would still sign its user in.

A socket is authenticated once, at its handshake; an HTTP request is authenticated every time.
This is the HTTP request's test, run again for a socket: the session still exists and has not
expired, it still names this user and an allowed backend, the backend still returns the user
(an inactive user is refused by the model backend — checked here again in any case), and the
password hash stored at login still matches (a password change ends every other session, as in
``django.contrib.auth.get_user``). It only reads: no session is flushed or re-keyed here.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from importlib import import_module
from typing import Any

from django.conf import settings
from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, get_user_model, load_backend
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.utils import timezone
from django.utils.crypto import constant_time_compare, salted_hmac


@dataclass(frozen=True)
class SessionValidity:
    valid: bool
    # When the session expires, for the database-backed engines (None: unknown, or not valid).
    expires_at: datetime | None = None
    # The user as just loaded by the check (valid only): a socket command acts as this user, fresh.
    user: Any = field(default=None, compare=False, repr=False)


_INVALID = SessionValidity(valid=False)


def session_digest(session_key: str) -> str:
    """What stands for a session key in channel-layer messages: the key itself is a credential."""
    return salted_hmac("pivra.console.session", session_key).hexdigest()


def session_validity(*, session_key: str | None, user_id: int) -> SessionValidity:
    """Whether ``session_key`` still signs in user ``user_id``, and until when."""
    if not session_key:
        return _INVALID
    store = import_module(settings.SESSION_ENGINE).SessionStore(session_key=session_key)
    expires_at: datetime | None = None
    if isinstance(store, DatabaseSessionStore):
        # The row is the record (the cached engine's cache expires with it): its date is exact.
        expires_at = store.model.objects.filter(session_key=session_key).values_list("expire_date", flat=True).first()
        if expires_at is None or expires_at <= timezone.now():
            return _INVALID
    stored_user = store.get(SESSION_KEY)  # loads the session: empty when gone or expired
    backend_path = store.get(BACKEND_SESSION_KEY)
    if stored_user is None or backend_path not in settings.AUTHENTICATION_BACKENDS:
        return _INVALID
    try:
        if get_user_model()._meta.pk.to_python(stored_user) != user_id:
            return _INVALID
    except Exception:  # a malformed id in the session: not this user
        return _INVALID
    user = load_backend(backend_path).get_user(user_id)
    if user is None or not getattr(user, "is_active", False):
        return _INVALID
    stored_hash = store.get(HASH_SESSION_KEY)
    if not isinstance(stored_hash, str) or not stored_hash:
        return _INVALID
    hashes = [user.get_session_auth_hash(), *user.get_session_auth_fallback_hash()]
    if not any(constant_time_compare(stored_hash, current) for current in hashes):
        return _INVALID
    return SessionValidity(valid=True, expires_at=expires_at, user=user)
