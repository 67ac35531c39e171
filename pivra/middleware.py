"""Middleware that keeps each request on one thread under ASGI.

Django runs an async-capable ``MiddlewareMixin`` middleware (every built-in one) in async mode under
daphne, and each of its ``process_request`` / ``process_response`` hooks then hops from the event
loop to a thread and back. With eight middlewares that is over a dozen thread switches per request,
each waiting for the GIL behind busy request threads: the bench measured about 17 ms of daphne CPU
per agent reply and a ceiling under 100 replies/s. A sync-only middleware at the innermost position
makes Django build the whole chain in sync mode, so a request enters a thread once and stays there.
"""

from __future__ import annotations

from collections.abc import Callable

from django.http import HttpRequest, HttpResponse


class SyncMiddlewareChain:
    """Last in ``MIDDLEWARE``: declares itself sync-only so the chain above it runs synchronously."""

    sync_capable = True
    async_capable = False

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        return self.get_response(request)
