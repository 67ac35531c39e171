"""Throttling of password guesses: login and admin login (django-axes), and password reset mails.

axes counts failed logins in Redis (``AXES_HANDLER`` is ``LoginCacheHandler``, its cache handler
extended here), each counter living ``AXES_COOLOFF_TIME`` after its last failure:

- per client address, and per (account, client address) pair: ``AXES_FAILURE_LIMIT`` (10) failures
  lock that address, or that account *from that address*, out;
- per account from anywhere: only ``LOGIN_ACCOUNT_FAILURE_LIMIT`` (50) failures lock the account
  itself out. axes has one limit for every counter; a low one on the account alone would let anyone
  lock ``admin`` out with ten guesses, so that counter is kept here, beside axes' own.

A locked address or account is refused until its counter expires, even with the right password;
failures while refused are not counted (the wait stays what the page says). A successful login
clears its address's, its pair's and its account's counters (``AXES_RESET_ON_SUCCESS``). Nothing
is written to the database per attempt, so a flood of guesses costs Redis increments, not rows.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from axes.backends import AxesStandaloneBackend
from axes.handlers.cache import AxesCacheHandler
from axes.helpers import get_cache_timeout, get_client_cache_keys, get_client_username, get_cool_off, get_failure_limit
from django.conf import settings
from django.core.cache import cache
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from pivra.widget.ratelimit import rate_limit_hit

USERNAME_PREFIX = "user:"
# "axes-" like axes' own keys, so whatever clears those (tests, an operator's scan) clears this too.
ACCOUNT_KEY_PREFIX = "axes-account-"


class LoginThrottleBackend(AxesStandaloneBackend):
    """axes' lockout check, first in ``AUTHENTICATION_BACKENDS``, for every login that comes with a
    request (the login page, the admin login). A call without one is code logging a user in (the
    test client's ``login``), not a guess from the network, so there is nothing to count."""

    def authenticate(
        self, request: HttpRequest | None, username: str | None = None, password: str | None = None, **kwargs: Any
    ) -> None:
        if request is None:
            return None
        return super().authenticate(request, username, password, **kwargs)


def account_cache_key(username: str) -> str:
    """The account-wide failure counter of ``username`` as axes names it (prefixed); hashed, as
    axes' keys are."""
    return ACCOUNT_KEY_PREFIX + hashlib.sha256(username.encode()).hexdigest()


class LoginCacheHandler(AxesCacheHandler):
    """axes' Redis handler plus the account-wide counter with its own, higher limit."""

    def is_locked(self, request: HttpRequest, credentials: dict[str, Any] | None = None) -> bool:
        if super().is_locked(request, credentials):
            return True
        key = _account_key(request, credentials)
        return key is not None and (self.cache.get(key) or 0) >= settings.LOGIN_ACCOUNT_FAILURE_LIMIT

    def user_login_failed(
        self, sender: Any, credentials: dict[str, Any], request: HttpRequest | None = None, **kwargs: Any
    ) -> None:
        refused = request is not None and getattr(request, "axes_locked_out", False)
        super().user_login_failed(sender, credentials, request, **kwargs)
        key = _account_key(request, credentials) if request is not None else None
        if refused or key is None or self.is_whitelisted(request, credentials):
            return  # a refused attempt tried no password: not counted, so the lockout does not grow
        timeout = get_cache_timeout(request)
        failures = 1 if self.cache.add(key, 1, timeout=timeout) else self.cache.incr(key)
        self.cache.touch(key, timeout=timeout)
        if failures >= settings.LOGIN_ACCOUNT_FAILURE_LIMIT:
            request.axes_locked_out = True  # type: ignore[union-attr]  # this answer is the lockout page already
            request.axes_credentials = credentials  # type: ignore[union-attr]

    def user_logged_in(self, sender: Any, request: HttpRequest, user: Any, **kwargs: Any) -> None:
        super().user_logged_in(sender, request, user, **kwargs)
        if settings.AXES_RESET_ON_SUCCESS:
            self.cache.delete(account_cache_key(f"{USERNAME_PREFIX}{user.get_username()}"))

    def reset_attempts(
        self, *, ip_address: str | None = None, username: str | None = None, ip_or_username: bool = False
    ) -> int:
        """``axes_reset_username user:NAME`` lifts the account-wide lockout too (with an address,
        only that pair's counter is meant)."""
        count = super().reset_attempts(ip_address=ip_address, username=username, ip_or_username=ip_or_username)
        if username is not None and ip_address is None:
            count += int(bool(self.cache.delete(account_cache_key(username))))
        return count


def _account_key(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    username = get_client_username(request, credentials)
    return account_cache_key(username) if username else None


def login_username(request: HttpRequest, credentials: dict[str, Any] | None) -> str | None:
    """The account an attempt names, as axes counts it. Prefixed because axes keys each counter by
    the bare value: a guess for the username "203.0.113.7" would otherwise add to that address's
    counter and lock out everyone behind it."""
    username = credentials.get("username") if credentials else request.POST.get("username")
    return f"{USERNAME_PREFIX}{username}" if username else None


def lockout_response(
    request: HttpRequest, original_response: HttpResponse | None = None, credentials: dict[str, Any] | None = None
) -> HttpResponse:
    """The page a locked-out address or account gets (login and admin login alike), status 429."""
    seconds = _lockout_seconds_left(request, credentials)
    response = render(request, "registration/lockout.html", {"minutes": minutes_to_wait(seconds)}, status=429)
    response["Retry-After"] = str(seconds)
    return response


def _lockout_seconds_left(request: HttpRequest, credentials: dict[str, Any] | None) -> int:
    """When the last of the counters that reached the limit expires (the lockout ends then)."""
    cool_off = get_cool_off(request)
    fallback = int(cool_off.total_seconds()) if cool_off else 3600
    limits = dict.fromkeys(get_client_cache_keys(request, credentials), get_failure_limit(request, credentials))
    account_key = _account_key(request, credentials)
    if account_key is not None:
        limits[account_key] = settings.LOGIN_ACCOUNT_FAILURE_LIMIT
    left = 0
    for key, limit in limits.items():
        if (cache.get(key) or 0) < limit:
            continue
        # Django's cache API has no TTL read; the key is the cache's own, built the way it builds it.
        client = cache._cache.get_client(key)  # type: ignore[attr-defined]
        ttl = client.ttl(cache.make_and_validate_key(key))
        left = max(left, ttl if ttl > 0 else fallback)
    return left or fallback


def minutes_to_wait(seconds: int) -> int:
    return max(1, math.ceil(seconds / 60))


def password_reset_limit_hit(*, ip: str, email: str) -> None:
    """Count one reset request for the client address and for the email address; raise RateLimited
    once either is over its hourly budget. Counted whether or not an account has that address, so
    the answer never tells which addresses exist."""
    rate_limit_hit(bucket=f"pwreset:ip:{ip}", limit=settings.PASSWORD_RESETS_PER_IP_HOUR, window_seconds=3600)
    # Hashed: Redis keys are no place for people's email addresses.
    digest = hashlib.sha256(email.strip().lower().encode()).hexdigest()[:32]
    rate_limit_hit(
        bucket=f"pwreset:email:{digest}", limit=settings.PASSWORD_RESETS_PER_ADDRESS_HOUR, window_seconds=3600
    )
