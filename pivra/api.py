"""The project's REST API: one NinjaAPI, one router per app, errors as ``{code, detail}``."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from ninja import NinjaAPI
from ninja.errors import AuthenticationError, HttpError, ValidationError

from pivra.errors import DomainError

api = NinjaAPI(
    title="Pivra API",
    version="1",
    description="Widget (visitor) and console (agent) operations. Errors are JSON `{code, detail}`.",
    urls_namespace="api",
)


@api.exception_handler(DomainError)
def _domain_error(request: HttpRequest, exc: DomainError) -> HttpResponse:
    response = api.create_response(request, exc.as_dict(), status=exc.status)
    retry_after = getattr(exc, "retry_after", None)
    if retry_after is not None:
        response["Retry-After"] = str(retry_after)
    return response


@api.exception_handler(ValidationError)
def _validation_error(request: HttpRequest, exc: ValidationError) -> HttpResponse:
    problems = []
    for error in exc.errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part not in ("body", "payload"))
        problems.append(f"{where}: {error.get('msg', 'invalid')}" if where else str(error.get("msg", "invalid")))
    return api.create_response(
        request, {"code": "invalid_input", "detail": "; ".join(problems) or "Invalid input."}, status=422
    )


@api.exception_handler(AuthenticationError)
def _auth_error(request: HttpRequest, exc: AuthenticationError) -> HttpResponse:
    return api.create_response(
        request, {"code": "not_authenticated", "detail": "Log in or send valid credentials."}, status=401
    )


@api.exception_handler(HttpError)
def _http_error(request: HttpRequest, exc: HttpError) -> HttpResponse:
    return api.create_response(request, {"code": "http_error", "detail": str(exc)}, status=exc.status_code)


def _mount_routers() -> None:
    """Each app owns a router; mounting lives here so apps never import each other's API."""
    from handoff.api import router as console_router
    from pivra.widget.api import router as widget_router

    api.add_router("/widget/", widget_router)
    api.add_router("/console/", console_router)


_mount_routers()
