"""Middleware that keeps each request on one thread under ASGI.

Django runs an async-capable ``MiddlewareMixin`` middleware (every built-in one) in async mode under
daphne, and each of its ``process_request`` / ``process_response`` hooks then hops from the event
loop to a thread and back. With eight middlewares that is over a dozen thread switches per request,
each waiting for the GIL behind busy request threads: the bench measured about 17 ms of daphne CPU
per agent reply and a ceiling under 100 replies/s. A sync-only middleware at the innermost position
makes Django build the whole chain in sync mode, so a request enters a thread once and stays there.

The edge checks live here too: input no text column can store is refused before any query, for HTTP
requests (``RefuseUnstorableInput``) and WebSocket handshakes (``RefuseUnstorableSocket``).
"""

from __future__ import annotations

import codecs
import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote_to_bytes

from django.core.exceptions import BadRequest, RequestDataTooBig
from django.http import HttpRequest, HttpResponse, JsonResponse
from django.http.cookie import parse_cookie
from django.http.multipartparser import MultiPartParserError
from django.utils import translation
from django.utils.translation import gettext_noop

from pivra.inputs import MAX_JSON_DEPTH, has_forbidden, has_forbidden_in


class SyncMiddlewareChain:
    """Last in ``MIDDLEWARE``: declares itself sync-only so the chain above it runs synchronously."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)


class RefuseUnstorableInput:
    """Refuses, with a 400, a request carrying a character no text column can store — NUL or a lone
    surrogate — in its path, query string, headers (cookies included) or form / JSON body.

    Before any query: PostgreSQL raises on such a value wherever it lands (a lookup, a search, a
    session key), which was a 500, and inside a streamed export a download that never ended. It sits
    before the session middleware, so even a poisoned cookie is never looked up. Of a multipart body
    only the form fields are checked (an uploaded file may hold any byte); under ``/api/`` any other
    body is checked as JSON too, whatever its declared type, as the API's parser reads it. A request
    whose ``Content-Type`` charset is not a text encoding (``rot13``) is refused as well: decoding its
    form raised, a 500. Sync-only like ``SyncMiddlewareChain``, for the same reason.
    """

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refused = _unstorable_part(request)
        if refused is not None:
            return _refusal(request, refused)
        return self.get_response(request)


@dataclass(frozen=True)
class _Why:
    """A refusal's reason: a msgid (marked with gettext_noop) and its values, worded only when answered
    (this middleware runs before LocaleMiddleware: ``_refusal`` picks the browser's language)."""

    message: str
    values: dict[str, Any] = field(default_factory=dict)

    def words(self) -> str:
        text = translation.gettext(self.message)
        return text % self.values if self.values else text


def _unstorable_part(request: HttpRequest) -> _Why | None:
    """Why the request is refused (its first part holding an unstorable character), or None."""
    charset_problem = _unreadable_charset(request)
    if charset_problem is not None:
        return charset_problem
    try:
        return _first_unstorable(request)
    except MultiPartParserError:
        return _Why(gettext_noop("Invalid input: the form could not be read."))
    except RequestDataTooBig:
        return None  # the view's own limits answer (413 / 400)
    except BadRequest as error:  # a form that is not UTF-8: answered here in the API's format
        # Translators: %(error)s is Django's own explanation (already in the reader's language, or English).
        return _Why(gettext_noop("Invalid input: %(error)s"), {"error": str(error)})
    except (LookupError, ValueError):  # UnicodeError included: a codec that cannot decode this body
        return _Why(gettext_noop("Invalid input: the request could not be decoded with the charset it declares."))


def _unreadable_charset(request: HttpRequest) -> _Why | None:
    """Refuses a declared charset that is not a text encoding (``rot13``, ``base64``, ``zlib``) or
    cannot decode leniently (``idna``): decoding a form or query string with it raises, which was a
    500 on every address. An unknown name is left to Django, which then ignores it (UTF-8)."""
    charset = (getattr(request, "content_params", None) or {}).get("charset")
    if not charset:
        return None
    try:
        codec = codecs.lookup(charset)
    except LookupError:
        return None
    if getattr(codec, "_is_text_encoding", True):
        try:
            b"a\xe9".decode(codec.name, "replace")  # how Django decodes form fields and query strings
        except (LookupError, ValueError):  # UnicodeError is a ValueError
            pass
        else:
            return None
    return _Why(
        gettext_noop(
            "Invalid input: the charset %(charset)s of the Content-Type is not a text encoding this server reads."
        ),
        {"charset": repr(charset[:40])},
    )


def _first_unstorable(request: HttpRequest) -> _Why | None:
    if has_forbidden(request.path_info) or has_forbidden(request.path):
        return _Why(
            gettext_noop(
                "Invalid input: the address contains a character that is not allowed (NUL or an unpaired surrogate)."
            )
        )
    for key, values in request.GET.lists():
        if has_forbidden(key) or any(has_forbidden(value) for value in values):
            return _Why(
                gettext_noop(
                    "Invalid input: a query parameter contains a character that is not allowed "
                    "(NUL or an unpaired surrogate)."
                )
            )
    for key, value in request.META.items():
        if key.startswith("HTTP_") and isinstance(value, str) and has_forbidden(value):
            # Translators: %(header)s is an HTTP header's name, e.g. User-Agent (never translated).
            return _Why(
                gettext_noop(
                    "Invalid input: the %(header)s header contains a character that is not allowed "
                    "(NUL or an unpaired surrogate)."
                ),
                {"header": key[5:].replace("_", "-").title()},
            )
    # A cookie is unquoted after the header was read: "\000" in a quoted value becomes a NUL.
    if any(has_forbidden(key) or has_forbidden(value) for key, value in request.COOKIES.items()):
        return _Why(
            gettext_noop(
                "Invalid input: a cookie contains a character that is not allowed (NUL or an unpaired surrogate)."
            )
        )
    content_type = request.content_type or ""
    if content_type in _FORM_TYPES:
        # Form fields only: an uploaded file's content may hold any byte.
        for key, values in request.POST.lists():
            if has_forbidden(key) or any(has_forbidden(value) for value in values):
                return _Why(
                    gettext_noop(
                        "Invalid input: the form contains a character that is not allowed "
                        "(NUL or an unpaired surrogate)."
                    )
                )
    # The API's parser reads any body as JSON whatever its declared type, a form's included; a
    # multipart body is the exception, its stream is spent above and the API can no longer read it.
    reads_json = content_type not in _FORM_TYPES or (
        content_type != "multipart/form-data" and request.path_info.startswith("/api/")
    )
    if reads_json and request.body:
        return _unstorable_json(request.body)
    return None


def _unstorable_json(body: bytes) -> _Why | None:
    if b"\x00" in body:
        return _Why(
            gettext_noop(
                "Invalid input: the body contains a character that is not allowed (NUL or an unpaired surrogate)."
            )
        )
    try:
        document = json.loads(body)
    except RecursionError:
        return _TOO_DEEP
    except ValueError:
        return None  # not JSON: the API answers that itself
    return _BAD_BODY if has_forbidden_in(document) else None


_FORM_TYPES = ("application/x-www-form-urlencoded", "multipart/form-data")


_TOO_DEEP = _Why(
    gettext_noop("Invalid input: the body is nested over %(depth)s levels deep."), {"depth": MAX_JSON_DEPTH}
)
_BAD_BODY = _Why(
    gettext_noop(
        "Invalid input: the body contains a character that is not allowed (NUL or an unpaired surrogate)"
        " or is nested over %(depth)s levels deep."
    ),
    {"depth": MAX_JSON_DEPTH},
)


def _refusal(request: HttpRequest, why: _Why) -> HttpResponse:
    # Before LocaleMiddleware and sessions: the browser's language (Accept-Language, language cookie).
    with translation.override(translation.get_language_from_request(request)):
        detail = why.words()
    wants_json = request.path_info.startswith("/api/") or "json" in request.headers.get("Accept", "")
    if wants_json:
        return JsonResponse({"code": "invalid_input", "detail": detail}, status=400)
    return HttpResponse(detail, status=400, content_type="text/plain; charset=utf-8")


REFUSED_SOCKET_CODE = 4400


class RefuseUnstorableSocket:
    """The socket twin of ``RefuseUnstorableInput``, an ASGI wrapper in front of every WebSocket
    route: the HTTP middleware never sees an upgrade, and channels' session middleware looks the
    cookie up as sent (``"\\000"`` in a quoted cookie becomes a NUL, a PostgreSQL error that broke the
    handshake). A handshake whose path, query string, headers or cookies hold NUL, a lone surrogate or
    bytes that are not UTF-8 is closed before the application sees it, with code 4400 (a browser sees
    the upgrade refused)."""

    def __init__(self, application: Any) -> None:
        self.application = application

    # A plain callable handing on the next awaitable: no coroutine per connection (pivra/asgi_layers.py).
    _asgi_single_callable = True

    def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Awaitable[Any]:
        if scope["type"] == "websocket" and socket_scope_unstorable(scope):
            return self._refuse(receive, send)
        return self.application(scope, receive, send)

    @staticmethod
    async def _refuse(receive: Any, send: Any) -> None:
        message = await receive()
        if message["type"] == "websocket.connect":
            await send({"type": "websocket.close", "code": REFUSED_SOCKET_CODE})


def socket_scope_unstorable(scope: dict[str, Any]) -> bool:
    """True when a WebSocket handshake carries a value no text column can store, or undecodable bytes."""
    if has_forbidden(str(scope.get("path", ""))):
        return True
    try:
        query = unquote_to_bytes(bytes(scope.get("query_string") or b"").replace(b"+", b" ")).decode()
    except UnicodeDecodeError:  # a lone surrogate's UTF-8 form included
        return True
    if has_forbidden(query):
        return True
    for name, value in scope.get("headers") or []:
        if b"\x00" in name or b"\x00" in value:
            return True
        if name.lower() == b"cookie":
            cookies = parse_cookie(value.decode("latin-1"))  # as channels reads it, unquoting "\000"
            if any(has_forbidden(key) or has_forbidden(text) for key, text in cookies.items()):
                return True
    return False
