from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest
from django.utils.functional import SimpleLazyObject

from chatbots.models import Membership
from chatbots.selectors import memberships_for_user
from pivra.console.selectors import unclaimed_count


def pivra(request: HttpRequest) -> dict[str, Any]:
    return {"PIVRA_PUBLIC_URL": settings.PUBLIC_URL}


def console(request: HttpRequest) -> dict[str, Any]:
    """The sidebar's red badge (kept live by the console socket) and the workspace switcher.

    Reuses the membership ``workspace_required`` already looked up, and reads lazily: the live
    list fragment and other partial templates render through here too but show neither.
    """
    membership: Membership | None = getattr(request, "membership", None)
    if membership is None:
        return {}
    workspace_id = membership.workspace_id
    return {
        "unclaimed_handoffs": SimpleLazyObject(lambda: unclaimed_count(workspace_id=workspace_id)),
        # One query with the workspace names, however many workspaces the user is in.
        "workspace_memberships": SimpleLazyObject(lambda: list(memberships_for_user(user=request.user))),
    }
