"""The project's REST API: one NinjaAPI, one router per app, errors as ``{code, detail}``."""

from __future__ import annotations

import json
import logging
import re
from typing import Any

from django.conf import settings
from django.http import Http404, HttpRequest, HttpResponse
from django.http.multipartparser import MultiPartParserError
from django.http.request import RawPostDataException
from django.utils.translation import gettext as _
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError
from ninja.parser import Parser
from ninja.types import DictStrAny

from pivra import api_schema
from pivra.api_errors import GENERIC_ERRORS
from pivra.errors import DomainError
from pivra.unavailable import is_unavailable, unavailable_response

logger = logging.getLogger(__name__)


class BodyIsNotAnObject(ValueError):
    """A JSON body that is an array, a number, a string or null where every operation takes an object."""


class ObjectBodyParser(Parser):
    """Every request body is a JSON object: ninja would otherwise read a list or a number as an
    object whose fields are all missing, and an all-optional body would pass."""

    def parse_body(self, request: HttpRequest) -> DictStrAny:
        data = json.loads(request.body)
        if not isinstance(data, dict):
            raise BodyIsNotAnObject(_("The body must be a JSON object, not %(type)s.") % {"type": type(data).__name__})
        return data


class PivraAPI(NinjaAPI):
    def get_openapi_schema(self, *, path_prefix: str | None = None, path_params: DictStrAny | None = None) -> Any:
        schema = super().get_openapi_schema(path_prefix=path_prefix, path_params=path_params)
        return api_schema.document(schema)


api = PivraAPI(
    title="Pivra API",
    version="1",
    description=(
        "Widget (visitor) and console (agent) operations.\n\n"
        "**Authentication.** Widget operations take the visitor token from `POST /api/widget/session` as "
        "`Authorization: Bearer …`. Console operations take the agent's Django session cookie; every "
        "console POST also needs the `X-CSRFToken` header (the `csrftoken` cookie's value).\n\n"
        "**Errors.** Every error is JSON `{code, detail}` — also an unknown path under /api/ (404 "
        "`not_found`), a wrong method (405 `method_not_allowed`), a body that is not a JSON object or not "
        "JSON (400 `invalid_input`), a field outside its constraints (422 `invalid_input`), a NUL "
        "character anywhere (400 `invalid_input`), Redis, the task broker or PostgreSQL briefly out of reach "
        "(503 `unavailable` with `Retry-After`: try again) and an unexpected failure (500 `server_error`, logged)."
    ),
    urls_namespace="api",
    parser=ObjectBodyParser(),
)


def _error(request: HttpRequest, status: int, code: str, detail: str) -> HttpResponse:
    return api.create_response(request, {"code": code, "detail": detail}, status=status)


@api.exception_handler(DomainError)
def _domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    response = api.create_response(request, exc.as_dict(), status=exc.status)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


# A refused field whose code the clients already handle, whether the schema or the service refuses
# it: the widget shows invalid_phone inline under the number field, and gives a message_too_long
# text back to the composer.
_FIELD_CODES = {"client_id": "invalid_client_id", "phone": "invalid_phone"}
# The routes whose "text" is a message (widget messages, console replies, notes): only there is a text
# over the limit "message_too_long" (413, the message limit's words); elsewhere (the typing preview's
# text) it is an ordinary 422 invalid_input.
_MESSAGE_ROUTE = re.compile(r"/(messages|reply|notes)/?$")


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    problems, fields, kinds = [], set(), set()
    for error in exc.errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "payload"))
        fields.add(where)
        kinds.add(str(error.get("type", "")))
        problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    if fields == {"text"} and kinds == {"string_too_long"} and _MESSAGE_ROUTE.search(request.path):
        limit = settings.MESSAGE_MAX_LENGTH
        return _error(
            request,
            413,
            "message_too_long",
            _("Messages can be at most %(limit)d characters long.") % {"limit": limit},
        )
    if fields == {"text"} and kinds <= {"string_too_short", "string_pattern_mismatch"}:
        return _error(request, 422, "empty_message", _("Type a message first."))
    if fields == {"email"}:  # a transcript's address: the same words as the service's own check
        return _error(request, 422, "invalid_email", _("Please enter a valid email address."))
    if fields == {"comment"} and kinds == {"string_too_long"}:  # a rating's comment: the service's code
        return _error(
            request,
            422,
            "comment_too_long",
            _("The comment can be at most %(count)d characters long.") % {"count": 1000},
        )
    code = _FIELD_CODES.get(fields.pop(), "invalid_input") if len(fields) == 1 else "invalid_input"
    return _error(request, 422, code, "; ".join(problems) or _("Invalid input."))


@api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return _error(request, 401, "not_authenticated", _("Log in or send valid credentials."))


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    if isinstance(exc.__cause__, BodyIsNotAnObject):
        return _error(request, 400, "invalid_input", str(exc.__cause__))
    if exc.__cause__ is not None and exc.status_code == 400:  # ninja could not parse the body
        return _error(request, 400, "invalid_input", _("The body must be a JSON object (it is not valid JSON)."))
    if exc.status_code == 403 and "CSRF" in str(exc):
        return _error(request, 403, "csrf_failed", _("Send the csrftoken cookie's value in the X-CSRFToken header."))
    code, _detail = GENERIC_ERRORS.get(exc.status_code, ("http_error", ""))
    return _error(request, exc.status_code, code, str(exc))


@api.exception_handler(RawPostDataException)
@api.exception_handler(MultiPartParserError)
def _unreadable_body(request: HttpRequest, exc: Exception) -> HttpResponse:
    """A form or multipart body (malformed or not) where the operation reads JSON: its stream was
    consumed as a form before the body could be read."""
    return _error(request, 400, "invalid_input", _("The body must be a JSON object sent as application/json."))


@api.exception_handler(Http404)
def _not_found(request: HttpRequest, exc: Http404) -> HttpResponse:
    return _error(request, 404, "not_found", _("Not found."))


@api.exception_handler(Exception)
def _unexpected(request: HttpRequest, exc: Exception) -> HttpResponse:
    """A bug: logged with its traceback (as Django logs a 500), answered without internals. Redis, the
    broker or PostgreSQL out of reach is no bug: 503 ``unavailable`` with Retry-After (``pivra.unavailable``)."""
    if is_unavailable(exc):
        return unavailable_response(request, exc)
    logger.error("Internal Server Error: %s", request.path, exc_info=exc)
    code, detail = GENERIC_ERRORS[500]
    return _error(request, 500, code, str(detail))


def _mount_routers() -> None:
    """Each app owns a router; mounting lives here so apps never import each other's API."""
    from canned.api import router as canned_router
    from chatbots.api import router as availability_router
    from conversations.notes_api import router as notes_router
    from conversations.transcript_api import router as transcript_router
    from handoff.api import router as console_router
    from notifications.api import router as notifications_router
    from pivra.widget.api import router as widget_router
    from pivra.widget.survey_api import router as survey_router

    api.add_router("/widget/", widget_router)
    api.add_router("/widget/", survey_router)
    api.add_router("/console/", transcript_router)
    api.add_router("/console/", console_router)
    api.add_router("/console/", availability_router)
    api.add_router("/console/", notifications_router)
    api.add_router("/console/", notes_router)
    api.add_router("/console/", canned_router)


_mount_routers()
