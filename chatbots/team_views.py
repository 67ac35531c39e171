"""Console pages about the team: the sidebar's status control (without JavaScript), the "Online now"
list of the Conversations page, and a member's capacity (owners and admins, on the Overview's Team)."""

from __future__ import annotations

from django.contrib import messages
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils.http import url_has_allowed_host_and_scheme
from django.utils.translation import gettext as _
from django.views.decorators.http import require_GET, require_POST

from chatbots.access import request_membership, workspace_required
from chatbots.availability import MAX_LIVE_CHATS_LIMIT, membership_set_availability, membership_set_max_live_chats
from chatbots.presence import workspace_roster
from pivra.errors import DomainError
from pivra.inputs import parse_int


def _back(request: HttpRequest) -> HttpResponse:
    """Back to the page the form was on (this site only), else the overview."""
    target = str(request.POST.get("next", ""))
    if url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}, require_https=request.is_secure()):
        return redirect(target)
    return redirect("dashboard:home")


@require_POST
@workspace_required
def set_availability(request: HttpRequest) -> HttpResponse:
    """The sidebar's status control as a plain form (the page script uses the console API instead)."""
    try:
        membership_set_availability(
            user=request.user,  # type: ignore[arg-type]  # workspace_required: signed in
            workspace_id=request_membership(request).workspace_id,
            availability=str(request.POST.get("availability", "")),
        )
    except DomainError as exc:
        messages.error(request, exc.detail)
    return _back(request)


@require_GET
@workspace_required
def team_presence(request: HttpRequest) -> HttpResponse:
    """The "Online now" list alone: the Conversations page re-reads it when presence changes."""
    roster = workspace_roster(workspace_id=request_membership(request).workspace_id)
    return render(request, "console/presence_list.html", {"roster": roster})


@require_POST
@workspace_required
def member_capacity(request: HttpRequest, membership_id: int) -> HttpResponse:
    """An owner or admin sets a member's most live chats at once (empty: unlimited)."""
    back = reverse("dashboard:home") + "#team"
    raw = str(request.POST.get("max_live_chats", "")).strip()
    value = parse_int(raw, min_value=1, max_value=MAX_LIVE_CHATS_LIMIT) if raw else None
    if raw and value is None:
        messages.error(
            request,
            _("Max live chats must be a whole number from 1 to %(max)d, or empty.") % {"max": MAX_LIVE_CHATS_LIMIT},
        )
        return redirect(back)
    try:
        member = membership_set_max_live_chats(
            actor=request.user,  # type: ignore[arg-type]
            workspace_id=request_membership(request).workspace_id,
            membership_id=membership_id,
            max_live_chats=value,
        )
    except DomainError as exc:
        if exc.status == 404:
            raise Http404(exc.detail) from exc
        messages.error(request, exc.detail)
    else:
        limit = _("unlimited") if member.max_live_chats is None else str(member.max_live_chats)
        name = member.user.get_short_name() or member.user.get_username()
        messages.success(request, _("Max live chats for %(name)s: %(limit)s.") % {"name": name, "limit": limit})
    return redirect(back)
