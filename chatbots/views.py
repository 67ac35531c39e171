"""Console pages owned by this app: the workspace overview and the workspace switcher."""

from __future__ import annotations

from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.http import require_POST

from chatbots.access import workspace_required
from chatbots.features import workspace_effective_plan
from chatbots.models import Membership
from chatbots.selectors import SESSION_WORKSPACE_KEY, chatbots_for_workspace, memberships_for_user


@workspace_required
def home(request: HttpRequest) -> HttpResponse:
    membership: Membership = request.membership  # type: ignore[attr-defined]
    workspace = membership.workspace
    context = {
        "plan": workspace_effective_plan(workspace=workspace),
        "subscription": getattr(workspace, "subscription", None),
        "chatbots": chatbots_for_workspace(workspace_id=workspace.pk).prefetch_related("knowledge_entries"),
        "members": workspace.memberships.select_related("user").order_by("role", "user__username"),
        "nav": "home",
    }
    return render(request, "console/home.html", context)


@require_POST
@workspace_required
def switch_workspace(request: HttpRequest) -> HttpResponse:
    wanted = request.POST.get("workspace", "")
    if wanted.isdigit() and memberships_for_user(user=request.user).filter(workspace_id=int(wanted)).exists():
        request.session[SESSION_WORKSPACE_KEY] = int(wanted)
    return redirect("dashboard:home")
