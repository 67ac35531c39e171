"""The client address every per-IP limit counts (login throttling via ``AXES_CLIENT_IP_CALLABLE``,
password reset mails, widget limits).

One function, so every limit agrees on who "one client" is. ``REMOTE_ADDR`` is already the right
address behind a proxy: pivra/proxy.py rewrites the ASGI client from the trusted hop of
``X-Forwarded-For`` (never the leftmost, client-written entry) before Django builds the request.
Anything smarter about addresses belongs here, not at each caller.
"""

from __future__ import annotations

from django.http import HttpRequest


def client_ip(request: HttpRequest) -> str:
    # ``.get``: requests built in code (the test client's ``force_login``) carry no REMOTE_ADDR.
    return str(request.META.get("REMOTE_ADDR") or "")
