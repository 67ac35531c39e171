"""Every error under ``/api/`` is JSON ``{code, detail}`` — also the ones no API operation answers.

Django and django-ninja answer some refusals themselves, in HTML or with an empty body: an unknown
path (404 page), a wrong method (ninja's bare 405), a malformed multipart body or a disallowed host
(400 page), an unexpected exception (500 page). ``ApiErrorsAsJson`` rewrites any such non-JSON error
response under ``/api/`` into the same shape as every other refusal, so a client parses one format.
"""

from __future__ import annotations

import json
from collections.abc import Callable

from django.http import HttpRequest, HttpResponse, HttpResponseBase, JsonResponse
from django.utils.functional import Promise
from django.utils.translation import gettext_lazy as _

API_PREFIX = "/api/"

# The code and detail of an error response the API did not write itself, by status.
# The details are lazy (translated when the response is written): str() them before use.
GENERIC_ERRORS: dict[int, tuple[str, str | Promise]] = {
    400: ("invalid_input", _("The request could not be read (malformed body or headers).")),
    401: ("not_authenticated", _("Log in or send valid credentials.")),
    403: ("forbidden", _("You are not allowed to do this.")),
    404: ("not_found", _("There is no API operation at this address.")),
    405: ("method_not_allowed", _("This operation does not accept this HTTP method.")),
    413: ("too_large", _("The request body is too large.")),
    415: ("unsupported_media_type", _("Send the body as application/json.")),
    429: ("rate_limited", _("Too many requests. Try again in a moment.")),
    500: ("server_error", _("Something went wrong on our side. The error has been logged; try again in a moment.")),
}
# Headers of the original response a client still needs after the rewrite.
_KEPT_HEADERS = ("Allow", "Retry-After")


def is_api_request(request: HttpRequest) -> bool:
    return request.path_info.startswith(API_PREFIX)


def api_error(status: int, code: str | None = None, detail: str | None = None) -> JsonResponse:
    """``{code, detail}`` with ``status``; code and detail default to the generic ones of the status."""
    default_code, default_detail = GENERIC_ERRORS.get(
        status, GENERIC_ERRORS[500] if status >= 500 else GENERIC_ERRORS[400]
    )
    return JsonResponse({"code": code or default_code, "detail": str(detail or default_detail)}, status=status)


def _is_json_error(response: HttpResponseBase) -> bool:
    if response.streaming or not isinstance(response, HttpResponse):
        return True  # a stream is never rewritten (the SSE view answers its own errors as JSON)
    if not response.get("Content-Type", "").startswith("application/json"):
        return False
    try:
        body = json.loads(response.content)
    except ValueError:
        return False
    return isinstance(body, dict) and isinstance(body.get("code"), str) and isinstance(body.get("detail"), str)


class ApiErrorsAsJson:
    """Rewrites a non-``{code, detail}`` error response (status ≥ 400) under ``/api/`` into one.

    Place it first in ``MIDDLEWARE`` so it also sees what the other middlewares answer. Sync-only
    like ``pivra.middleware.SyncMiddlewareChain``: the whole chain then runs on one thread."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponseBase]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponseBase:
        response = self.get_response(request)
        if response.status_code < 400 or not is_api_request(request) or _is_json_error(response):
            return response
        rewritten = api_error(response.status_code)
        for header in _KEPT_HEADERS:
            if header in response:
                rewritten[header] = response[header]
        return rewritten
