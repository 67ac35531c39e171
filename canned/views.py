"""Dashboard → Canned replies: list, create, edit, delete.

Every member may look (agents use the replies from the composer); only owners and admins
(``membership.can_manage``) change them. Another workspace's reply is a 404.
"""

from __future__ import annotations

from typing import Any

from django.contrib import messages
from django.core.exceptions import PermissionDenied
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.translation import gettext as _

from canned import services
from canned.forms import CannedReplyForm
from canned.models import CannedReply
from canned.placeholders import KNOWN_PLACEHOLDERS
from canned.selectors import canned_replies_for_workspace, canned_reply_for_workspace
from chatbots.access import request_membership, workspace_required
from chatbots.models import Membership
from pivra.errors import DomainError


def _require_manager(membership: Membership) -> None:
    if not membership.can_manage:
        raise PermissionDenied("Only workspace owners and admins can change canned replies.")


def _reply_or_404(membership: Membership, pk: int) -> CannedReply:
    reply = canned_reply_for_workspace(workspace_id=membership.workspace_id, reply_id=pk)
    if reply is None:
        raise Http404("No such canned reply in this workspace.")
    return reply


def _base(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    membership = request_membership(request)
    return {"nav": "canned", "can_manage": membership.can_manage, "placeholders": KNOWN_PLACEHOLDERS, **extra}


@workspace_required
def canned_list(request: HttpRequest) -> HttpResponse:
    membership = request_membership(request)
    replies = canned_replies_for_workspace(workspace_id=membership.workspace_id)
    return render(request, "console/canned.html", _base(request, replies=replies))


def _form_view(request: HttpRequest, *, reply: CannedReply | None) -> HttpResponse:
    membership = request_membership(request)
    initial = {"shortcut": reply.shortcut, "title": reply.title, "text": reply.text} if reply else None
    form = CannedReplyForm(request.POST or None, initial=initial)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        try:
            if reply is None:
                saved = services.canned_reply_create(
                    workspace=membership.workspace,
                    shortcut=data["shortcut"],
                    title=data["title"],
                    text=data["text"],
                    created_by=request.user,  # type: ignore[arg-type]
                )
                messages.success(request, _("Canned reply /%(shortcut)s created.") % {"shortcut": saved.shortcut})
            else:
                saved = services.canned_reply_update(
                    reply=reply, shortcut=data["shortcut"], title=data["title"], text=data["text"]
                )
                messages.success(request, _("Canned reply /%(shortcut)s saved.") % {"shortcut": saved.shortcut})
            return redirect("dashboard:canned")
        except DomainError as exc:
            form.add_error(CannedReplyForm.ERROR_FIELDS.get(exc.code), exc.detail)
    context = _base(request, form=form, reply=reply, text_max=services.canned_text_max())
    return render(request, "console/canned_form.html", context)


@workspace_required
def canned_create(request: HttpRequest) -> HttpResponse:
    _require_manager(request_membership(request))
    return _form_view(request, reply=None)


@workspace_required
def canned_edit(request: HttpRequest, pk: int) -> HttpResponse:
    membership = request_membership(request)
    reply = _reply_or_404(membership, pk)  # another workspace's: 404 before anything else
    _require_manager(membership)
    return _form_view(request, reply=reply)


@workspace_required
def canned_delete(request: HttpRequest, pk: int) -> HttpResponse:
    membership = request_membership(request)
    reply = _reply_or_404(membership, pk)
    _require_manager(membership)
    if request.method == "POST":
        shortcut = reply.shortcut
        services.canned_reply_delete(reply=reply)
        messages.success(request, _("Canned reply /%(shortcut)s deleted.") % {"shortcut": shortcut})
        return redirect("dashboard:canned")
    return render(request, "console/canned_delete.html", _base(request, reply=reply))
