"""A logout forgets the Web Push subscriptions made under that session: the next person at that
browser must not be told about the agent's chats (the page cannot be relied on to unsubscribe)."""

from __future__ import annotations

from typing import Any

from django.contrib.auth import user_logged_out
from django.http import HttpRequest

from notifications.subscriptions import push_subscriptions_forget_session
from pivra.console.session_validity import session_digest


def _after_logout(sender: type[Any], request: HttpRequest, user: Any, **kwargs: Any) -> None:
    session_key = getattr(getattr(request, "session", None), "session_key", None)
    if session_key:
        push_subscriptions_forget_session(session_digest=session_digest(session_key))


def connect() -> None:
    user_logged_out.connect(_after_logout, dispatch_uid="notifications.logged_out")
