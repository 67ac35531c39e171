"""Fixed-window rate limits kept in Redis (the cache), shared by every server process."""

from __future__ import annotations

import time

from django.conf import settings
from django.core.cache import cache
from django.utils.translation import gettext as _

from pivra.errors import DomainError


def _too_fast(what: str, retry_after: int) -> str:
    """The refusal in the active language (the visitor's: see operations.visitor_language), one whole
    sentence per kind so translators never get a noun glued into a template."""
    if what == "typing updates":
        return _("You're sending typing updates too fast. Try again in %(n)d s.") % {"n": retry_after}
    if what == "read receipts":
        return _("You're sending read receipts too fast. Try again in %(n)d s.") % {"n": retry_after}
    return _("You're sending messages too fast. Try again in %(n)d s.") % {"n": retry_after}


class RateLimited(DomainError):
    status = 429

    def __init__(self, retry_after: int, what: str = "messages") -> None:
        super().__init__("rate_limited", _too_fast(what, retry_after))
        self.retry_after = retry_after


def rate_limit_hit(*, bucket: str, limit: int, window_seconds: int = 60, what: str = "messages") -> None:
    """Count one hit in ``bucket``; raise RateLimited once ``limit`` is passed within the window
    (``what`` names what was sent in its detail: "messages", "typing updates")."""
    window = int(time.time() // window_seconds)
    key = f"rl:{bucket}:{window}"
    if cache.add(key, 1, timeout=window_seconds + 1):
        count = 1
    else:
        try:
            count = cache.incr(key)
        except ValueError:  # the key expired between add and incr
            cache.add(key, 1, timeout=window_seconds + 1)
            count = 1
    if count > limit:
        retry_after = max(1, int(window_seconds - time.time() % window_seconds))
        raise RateLimited(retry_after, what)


def visitor_action_limits(*, visitor_key: str, ip: str | None) -> None:
    rate_limit_hit(bucket=f"v:{visitor_key}", limit=settings.RATE_VISITOR_PER_MINUTE)
    if ip:
        rate_limit_hit(bucket=f"ip:{ip}", limit=settings.RATE_IP_PER_MINUTE)


def page_report_limits(*, visitor_key: str, ip: str | None) -> None:
    """Page reports (sent on every navigation) have budgets of their own, so browsing a site never
    eats into the budget for messages."""
    rate_limit_hit(bucket=f"page:v:{visitor_key}", limit=settings.RATE_VISITOR_PER_MINUTE)
    if ip:
        rate_limit_hit(bucket=f"page:ip:{ip}", limit=settings.RATE_IP_PER_MINUTE)
