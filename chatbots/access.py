"""Dashboard access: every console view runs inside one workspace the user belongs to."""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps
from typing import Any

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from chatbots.models import Membership
from chatbots.selectors import membership_for_request


class WorkspaceRequest(HttpRequest):
    membership: Membership


def workspace_required(view: Callable[..., HttpResponse]) -> Callable[..., HttpResponse]:
    """Attach ``request.membership``; a user in no workspace gets a page saying so, never data."""

    @login_required
    @wraps(view)
    def wrapper(request: HttpRequest, *args: Any, **kwargs: Any) -> HttpResponse:
        membership = membership_for_request(request=request)
        if membership is None:
            return render(request, "console/no_workspace.html", status=403)
        request.membership = membership  # type: ignore[attr-defined]
        return view(request, *args, **kwargs)

    return wrapper


def request_membership(request: HttpRequest) -> Membership:
    """The membership ``workspace_required`` attached: call only inside a view it wraps."""
    membership: Membership = request.membership  # type: ignore[attr-defined]
    return membership
