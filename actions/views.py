"""Dashboard → Actions: list, create, edit, pause/resume, test, delete, and the delivery log.

Views parse, check access and call a service. Everyone in the workspace may look; only owners and
admins (``membership.can_manage``) change anything.
"""

from __future__ import annotations

import json
import secrets
from datetime import timedelta
from itertools import groupby
from typing import Any

from django.conf import settings
from django.contrib import messages
from django.core.cache import cache
from django.core.exceptions import PermissionDenied
from django.core.paginator import Paginator
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.translation import gettext as _
from django.utils.translation import gettext_lazy
from django.views.decorators.http import require_POST

from actions import deliveries, services
from actions.forms import ActionForm
from actions.models import Action, Delivery
from actions.selectors import action_for_workspace, actions_for_workspace, deliveries_for_action, delivery_for_action
from actions.signing import secret_mask
from actions.transports import encode_body
from chatbots.access import request_membership, workspace_required
from chatbots.features import workspace_has_feature
from chatbots.models import Membership, Plan
from chatbots.plans import Feature
from chatbots.selectors import chatbots_for_workspace
from pivra.crypto import secret_decrypt, secret_encrypt
from pivra.errors import DomainError
from pivra.unavailable import is_unavailable, log_unavailable

# A new signing secret is shown once: the POST that made it leaves it, encrypted, under a random
# one-time token in the cache (never the session table, which is written to the database), and
# the page it redirects to takes it out on first read.
REVEAL_PREFIX = "actions:reveal:"
REVEAL_SECONDS = 600
DELIVERIES_PER_PAGE = 25
KINDS = [
    (
        Action.Kind.EMAIL.value,
        gettext_lazy("Email"),
        gettext_lazy("An email to your team with a link to the conversation."),
    ),
    (
        Action.Kind.WEBHOOK.value,
        gettext_lazy("Webhook"),
        gettext_lazy("Signed JSON to your CRM, Zapier, Make or any endpoint."),
    ),
    (
        Action.Kind.SLACK.value,
        gettext_lazy("Slack"),
        gettext_lazy("A formatted message in a channel, via an incoming webhook."),
    ),
]


def _enabled(membership: Membership) -> bool:
    return workspace_has_feature(workspace=membership.workspace, feature=Feature.ACTIONS)


def _require_manager(membership: Membership) -> None:
    if not membership.can_manage:
        raise PermissionDenied("Only workspace owners and admins can change actions.")


def _action_or_404(membership: Membership, pk: int) -> Action:
    action = action_for_workspace(workspace_id=membership.workspace_id, action_id=pk)
    if action is None:
        raise Http404("No such action in this workspace.")
    return action


def _reveal_put(request: HttpRequest, *, action: Action, secret: str, new: bool) -> str:
    token = secrets.token_urlsafe(24)
    entry = {"action": action.pk, "user": request.user.pk, "secret": secret_encrypt(secret), "new": new}
    cache.set(REVEAL_PREFIX + token, entry, REVEAL_SECONDS)
    return f"{reverse('dashboard:action-detail', args=[action.pk])}?reveal={token}"


def _reveal_redirect(request: HttpRequest, *, action: Action, secret: str, new: bool) -> HttpResponse:
    """To the page that shows the new secret once. With the cache out of reach the secret is saved
    but cannot wait for that page: this response shows it instead of a 503 that would lose it."""
    try:
        return redirect(_reveal_put(request, action=action, secret=secret, new=new))
    except Exception as exc:
        if not is_unavailable(exc):
            raise
        log_unavailable("action secret reveal", exc)
        return _detail_page(request, action=action, reveal={"secret": secret, "new": new})


def _reveal_take(request: HttpRequest, *, action: Action) -> dict[str, Any] | None:
    """The secret to show once, or None. Read and deleted together: a reload shows it no more."""
    token = request.GET.get("reveal", "")
    if not token or len(token) > 64:
        return None
    entry = cache.get(REVEAL_PREFIX + token)
    if not isinstance(entry, dict) or entry.get("action") != action.pk or entry.get("user") != request.user.pk:
        return None
    cache.delete(REVEAL_PREFIX + token)
    return {"secret": secret_decrypt(str(entry.get("secret", ""))), "new": bool(entry.get("new"))}


def _locked(request: HttpRequest) -> HttpResponse:
    plans = Plan.objects.filter(is_public=True).order_by("position")
    upgrades = [p for p in plans if p.features.get(str(Feature.ACTIONS))]
    return render(request, "console/actions.html", {"nav": "actions", "locked": True, "upgrades": upgrades})


def _base(request: HttpRequest, **extra: Any) -> dict[str, Any]:
    membership = request_membership(request)
    return {
        "nav": "actions",
        "can_manage": membership.can_manage,
        "kinds": KINDS,
        "webhook_timeout": settings.WEBHOOK_TIMEOUT,
        **extra,
    }


@workspace_required
def action_list(request: HttpRequest) -> HttpResponse:
    membership = request_membership(request)
    if not _enabled(membership):
        return _locked(request)
    actions = list(actions_for_workspace(workspace_id=membership.workspace_id))
    groups = [{"chatbot": bot, "actions": list(items)} for bot, items in groupby(actions, key=lambda a: a.chatbot)]
    chatbots = chatbots_for_workspace(workspace_id=membership.workspace_id)
    return render(
        request, "console/actions.html", _base(request, actions=actions, groups=groups, has_chatbots=chatbots.exists())
    )


def _form_view(request: HttpRequest, *, action: Action | None) -> HttpResponse:
    membership = request_membership(request)
    chatbots = chatbots_for_workspace(workspace_id=membership.workspace_id)
    form = ActionForm(request.POST or None, chatbots=chatbots, action=action)
    if request.method == "POST" and form.is_valid():
        data = form.cleaned_data
        recipients = [data.get("recipients") or ""]
        try:
            if action is None:
                created = services.action_create(
                    workspace=membership.workspace,
                    chatbot=data["chatbot"],
                    name=data["name"],
                    kind=data["kind"],
                    events=data["events"],
                    url=data.get("url") or "",
                    recipients=recipients,
                    created_by=request.user,  # type: ignore[arg-type]
                )
                messages.success(request, _("Action “%(name)s” created.") % {"name": created.name})
                if created.kind == Action.Kind.WEBHOOK:
                    return _reveal_redirect(request, action=created, secret=created.secret, new=True)
                return redirect("dashboard:action-detail", pk=created.pk)
            services.action_update(
                action=action,
                name=data["name"],
                events=data["events"],
                url=data.get("url") or "",
                recipients=recipients,
            )
            messages.success(request, _("Changes saved."))
            return redirect("dashboard:action-detail", pk=action.pk)
        except DomainError as exc:
            field = {"invalid_url": "url", "invalid_recipients": "recipients", "invalid_name": "name"}.get(exc.code)
            form.add_error(field if field in form.fields else None, exc.detail)
    return render(request, "console/actions_form.html", _base(request, form=form, action=action))


@workspace_required
def action_create(request: HttpRequest) -> HttpResponse:
    membership = request_membership(request)
    if not _enabled(membership):
        return _locked(request)
    _require_manager(membership)
    return _form_view(request, action=None)


@workspace_required
def action_edit(request: HttpRequest, pk: int) -> HttpResponse:
    membership = request_membership(request)
    if not _enabled(membership):
        return _locked(request)
    _require_manager(membership)
    return _form_view(request, action=_action_or_404(membership, pk))


@workspace_required
def action_detail(request: HttpRequest, pk: int) -> HttpResponse:
    membership = request_membership(request)
    if not _enabled(membership):
        return _locked(request)
    action = _action_or_404(membership, pk)
    return _detail_page(request, action=action, reveal=_reveal_take(request, action=action))


def _detail_page(request: HttpRequest, *, action: Action, reveal: dict[str, Any] | None) -> HttpResponse:
    page = Paginator(deliveries_for_action(action=action), DELIVERIES_PER_PAGE).get_page(request.GET.get("page"))
    soon = timezone.now() + timedelta(seconds=60)
    # Refresh while something is about to change, so a test send shows its result by itself.
    # ...but never while a secret is shown: a reload would take it off the page for good.
    refresh = reveal is None and any(
        d.status == Delivery.Status.SENDING
        or (d.status == Delivery.Status.PENDING and d.next_attempt_at is not None and d.next_attempt_at <= soon)
        for d in page
    )
    now = timezone.now()
    grace_until = (
        action.previous_secret_expires_at
        if action.previous_secret and action.previous_secret_expires_at and action.previous_secret_expires_at > now
        else None
    )
    context = _base(
        request,
        action=action,
        page=page,
        reveal=reveal,
        refresh=refresh,
        secret_masked=secret_mask(action.secret),
        grace_until=grace_until,
    )
    response = render(request, "console/actions_detail.html", context)
    if reveal is not None:
        response["Cache-Control"] = "no-store"  # the page holds a secret: no copy in any cache
    return response


@workspace_required
def delivery_detail(request: HttpRequest, pk: int, delivery_id: int) -> HttpResponse:
    membership = request_membership(request)
    if not _enabled(membership):
        return _locked(request)
    action = _action_or_404(membership, pk)
    delivery = delivery_for_action(action=action, delivery_id=delivery_id)
    if delivery is None:
        raise Http404("No such delivery.")
    body = json.dumps(json.loads(encode_body(delivery.payload)), indent=2, ensure_ascii=False)
    context = _base(request, action=action, delivery=delivery, attempts=delivery.attempt_log.order_by("-number"))
    context["body"] = body
    return render(request, "console/actions_delivery.html", context)


def _post_action(request: HttpRequest, pk: int) -> Action:
    membership = request_membership(request)
    if not _enabled(membership):
        raise PermissionDenied("Actions are not included in this workspace's plan.")
    _require_manager(membership)
    return _action_or_404(membership, pk)


@require_POST
@workspace_required
def action_pause(request: HttpRequest, pk: int) -> HttpResponse:
    action = _post_action(request, pk)
    who = request.user.get_username()
    if services.action_pause(action=action, reason=f"Paused by {who}."):
        messages.success(request, _("Action paused. Nothing is sent until you resume it."))
    return redirect("dashboard:action-detail", pk=action.pk)


@require_POST
@workspace_required
def action_resume(request: HttpRequest, pk: int) -> HttpResponse:
    action = _post_action(request, pk)
    services.action_resume(action=action)
    messages.success(request, _("Action resumed."))
    return redirect("dashboard:action-detail", pk=action.pk)


@require_POST
@workspace_required
def action_test(request: HttpRequest, pk: int) -> HttpResponse:
    action = _post_action(request, pk)
    try:
        services.action_send_test(action=action)
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(request, _("Test sent to the queue. Its result appears in the delivery log below."))
    return redirect("dashboard:action-detail", pk=action.pk)


@require_POST
@workspace_required
def action_rotate_secret(request: HttpRequest, pk: int) -> HttpResponse:
    action = _post_action(request, pk)
    if action.kind != Action.Kind.WEBHOOK:
        raise Http404("Only webhook actions are signed.")
    secret = services.action_rotate_secret(action=action)
    messages.success(request, _("New signing secret created. The previous one keeps signing for 24 hours."))
    return _reveal_redirect(request, action=action, secret=secret, new=False)


@workspace_required
def action_delete(request: HttpRequest, pk: int) -> HttpResponse:
    action = _post_action(request, pk)
    if request.method == "POST":
        name = action.name
        services.action_delete(action=action)
        messages.success(request, _("Action “%(name)s” deleted.") % {"name": name})
        return redirect("dashboard:actions")
    return render(request, "console/actions_delete.html", _base(request, action=action))


@require_POST
@workspace_required
def delivery_redeliver(request: HttpRequest, pk: int, delivery_id: int) -> HttpResponse:
    action = _post_action(request, pk)
    delivery = delivery_for_action(action=action, delivery_id=delivery_id)
    if delivery is None:
        raise Http404("No such delivery.")
    try:
        deliveries.delivery_redeliver(delivery=delivery)
    except DomainError as exc:
        messages.error(request, exc.detail)
    else:
        messages.success(
            request,
            _("Delivery queued again with the same webhook-id (%(webhook_id)s).") % {"webhook_id": delivery.webhook_id},
        )
    target = request.POST.get("next", "")
    if target == "delivery":
        return redirect("dashboard:action-delivery", pk=action.pk, delivery_id=delivery.pk)
    return redirect("dashboard:action-detail", pk=action.pk)
