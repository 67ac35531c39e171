"""Redis (cache, rate limits, login throttle, channel layer, Celery broker) or PostgreSQL out of reach
is a pause, not a bug: every request path that needs it answers 503 with ``Retry-After``, never a 500.

One place decides what "unavailable" means (``is_unavailable``: redis-py's connection, timeout and
loading errors, kombu's ``OperationalError`` — what a Celery enqueue raises when the broker is down —
PostgreSQL unreachable, restarting or shutting down (``is_database_unavailable``), also when wrapped
in another exception, as Django wraps psycopg's) and how it is answered (``unavailable_response``): under
``/api/`` JSON ``{"code": "unavailable", "detail": …}``, elsewhere the readable ``503.html`` page.
It is reached from the API's exception handler (``pivra.api``), the page views'
``UnavailableAs503.process_exception`` and ``server_error`` (``handler500``), which also catches what a
middleware raised (a session write). Each logs one line, throttled, instead of a traceback per request.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Callable

import psycopg
import redis.exceptions
from django.db import InterfaceError as DjangoInterfaceError
from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.template import loader
from django.utils.translation import gettext, gettext_noop
from django.views import defaults
from kombu.exceptions import OperationalError

from pivra.api_errors import is_api_request

logger = logging.getLogger("pivra.unavailable")

UNAVAILABLE_CODE = "unavailable"
# How long a client waits before trying again: a Redis restart (supervised) takes about a second.
RETRY_AFTER_SECONDS = 3
# Marked for the catalogues; each use words it in the reader's language (gettext at the time of use).
UNAVAILABLE_DETAIL = gettext_noop(
    "The service is briefly unavailable (reconnecting to its database or message store). Try again in a few seconds."
)
# The socket close code both clients treat as "reconnect with backoff" (the console's 4503 already).
CLOSE_UNAVAILABLE = 4503

_UNAVAILABLE_TYPES: tuple[type[BaseException], ...] = (
    redis.exceptions.ConnectionError,
    redis.exceptions.TimeoutError,
    redis.exceptions.BusyLoadingError,  # a ConnectionError subclass; named for the reader
    OperationalError,
    ConnectionRefusedError,
)
# PostgreSQL errors that say the server is out of reach or going away, not that a statement was
# wrong: class 08 (connection exception), an administrator's or a crash's shutdown and "the database
# system is starting up / shutting down" (57P01-57P03), and no connection slot left (53300). A
# deadlock, a serialization failure or a statement timeout is an OperationalError too, but not this.
_DATABASE_DOWN_SQLSTATES = frozenset({"57P01", "57P02", "57P03", "53300"})
LOG_EVERY_SECONDS = 10.0
_last_logged: dict[str, float] = {}
_log_lock = threading.Lock()


def is_unavailable(exc: BaseException | None) -> bool:
    """True when ``exc`` (or an exception it was raised from or during) says Redis, the broker or
    PostgreSQL is out of reach. channels-redis and redis-py's asyncio client raise redis-py's own types."""
    return _found(exc, lambda one: isinstance(one, _UNAVAILABLE_TYPES) or _database_down(one))


def is_database_unavailable(exc: BaseException | None) -> bool:
    """True when ``exc`` (or an exception it was raised from or during) says PostgreSQL is out of
    reach: no connection (refused, reset, closed), the pool's wait for one ran out
    (``psycopg_pool.PoolTimeout``, an ``OperationalError`` without a SQLSTATE), or the server is
    shutting down or starting up. Django's ``OperationalError`` is judged by the psycopg error it
    wraps (its ``__cause__``); its ``InterfaceError`` (a closed connection) always counts."""
    return _found(exc, _database_down)


def caused_by(exc: BaseException | None, kind: type[BaseException] | tuple[type[BaseException], ...]) -> bool:
    """True when ``exc``, or an exception it was raised from or during, is a ``kind``."""
    return _found(exc, lambda one: isinstance(one, kind))


def _database_down(exc: BaseException) -> bool:
    if isinstance(exc, psycopg.InterfaceError | DjangoInterfaceError):
        return True
    if isinstance(exc, psycopg.OperationalError):
        sqlstate = exc.sqlstate
        return sqlstate is None or sqlstate.startswith("08") or sqlstate in _DATABASE_DOWN_SQLSTATES
    return False


def _found(exc: BaseException | None, matches: Callable[[BaseException], bool]) -> bool:
    seen: set[int] = set()
    while exc is not None and id(exc) not in seen:
        if matches(exc):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


def log_unavailable(where: str, exc: BaseException | None = None) -> None:
    """One warning line per ``where`` every ``LOG_EVERY_SECONDS``: an outage is not a log flood."""
    now = time.monotonic()
    with _log_lock:
        if now - _last_logged.get(where, -LOG_EVERY_SECONDS) < LOG_EVERY_SECONDS:
            return
        _last_logged[where] = now
    reason = f"{type(exc).__name__}: {exc}" if exc is not None else "unreachable"
    service = "PostgreSQL" if is_database_unavailable(exc) else "Redis"
    logger.warning("%s unavailable (%s): %s", service, where, reason)


def unavailable_response(request: HttpRequest, exc: BaseException | None = None) -> HttpResponse:
    """503 with ``Retry-After``: ``{code, detail}`` under ``/api/``, the readable page elsewhere."""
    # A fixed key, not the path: the throttle's table must not grow with every URL a client invents.
    log_unavailable("api" if is_api_request(request) else "pages", exc)
    response: HttpResponse
    if is_api_request(request) or "application/json" in request.headers.get("Accept", ""):
        response = JsonResponse({"code": UNAVAILABLE_CODE, "detail": gettext(UNAVAILABLE_DETAIL)}, status=503)
    else:
        page = loader.get_template("503.html").render({"retry_after": RETRY_AFTER_SECONDS})
        response = HttpResponse(page, status=503)
    response["Retry-After"] = str(RETRY_AFTER_SECONDS)
    response["Cache-Control"] = "no-store"
    response._has_been_logged = True  # type: ignore[attr-defined]  # Django's log_response: logged above
    return response


class UnavailableAs503:
    """In ``MIDDLEWARE``: a page view that raised an unavailability answers 503 (see module doc).
    Sync-only like ``pivra.middleware.SyncMiddlewareChain``, so the chain stays on one thread."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        return self.get_response(request)

    def process_exception(self, request: HttpRequest, exception: Exception) -> HttpResponse | None:
        return unavailable_response(request, exception) if is_unavailable(exception) else None


def server_error(request: HttpRequest) -> HttpResponse:
    """``handler500``: what escaped everything else — a middleware included — is a 503 when it is an
    unavailability, Django's 500 page otherwise. Django calls it inside its ``except`` block."""
    exc = sys.exc_info()[1]
    if is_unavailable(exc):
        return unavailable_response(request, exc)
    return defaults.server_error(request)
