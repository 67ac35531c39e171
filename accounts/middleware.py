"""The console speaks the agent's chosen language; without a choice, LocaleMiddleware's (the browser's)."""

from __future__ import annotations

from collections.abc import Callable

from django.db import DatabaseError
from django.http import HttpRequest, HttpResponse
from django.utils import translation

from accounts.languages import agent_language


class AgentLanguage:
    """After AuthenticationMiddleware: an authenticated agent with a chosen language gets it for every page and
    API call (one indexed query, only for signed-in requests; visitors never have a user)."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        try:
            user = getattr(request, "user", None)
            chosen = agent_language(user=user) if user is not None and user.is_authenticated else ""
        except DatabaseError:
            # PostgreSQL out of reach: the browser's language; the view answers the outage its own way
            # (503, or /healthz's report), as it would without this middleware.
            chosen = ""
        if chosen:
            translation.activate(chosen)
            request.LANGUAGE_CODE = chosen
        response = self.get_response(request)
        if chosen:
            response.headers.setdefault("Content-Language", chosen)
        return response
