from __future__ import annotations

from typing import Any

from django.conf import settings
from django.http import HttpRequest

from chatbots.selectors import membership_for_request
from handoff.models import Handoff


def pivra(request: HttpRequest) -> dict[str, Any]:
    return {"PIVRA_PUBLIC_URL": settings.PUBLIC_URL}


def console(request: HttpRequest) -> dict[str, Any]:
    """The unclaimed-handoff count for the sidebar's red badge (kept live by the console socket)."""
    user = getattr(request, "user", None)
    if user is None or not user.is_authenticated or not request.path.startswith("/dashboard/"):
        return {}
    membership = membership_for_request(request=request)
    if membership is None:
        return {}
    count = Handoff.objects.filter(
        workspace_id=membership.workspace_id, status__in=(Handoff.Status.PENDING, Handoff.Status.BUSY)
    ).count()
    return {"unclaimed_handoffs": count}
