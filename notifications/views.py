"""Pages of this app under /dashboard/: the service worker script and the notification click target."""

from __future__ import annotations

import uuid

from django.contrib.auth.decorators import login_required
from django.contrib.staticfiles import finders
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme
from django.views.decorators.http import require_GET, require_http_methods

from chatbots.models import Membership
from chatbots.selectors import SESSION_WORKSPACE_KEY

SERVICE_WORKER = "console/notifications-sw.js"
_script_cache: dict[str, bytes] = {}


def _service_worker_source() -> bytes:
    """The worker's source, read once per process (from the static files, so an installed copy has it)."""
    if SERVICE_WORKER not in _script_cache:
        path = finders.find(SERVICE_WORKER)
        if not path:
            raise Http404("No service worker.")
        with open(path, "rb") as handle:
            _script_cache[SERVICE_WORKER] = handle.read()
    return _script_cache[SERVICE_WORKER]


@require_GET
def service_worker(request: HttpRequest) -> HttpResponse:
    """``/dashboard/sw.js``: served from the dashboard's own path so its scope is the dashboard (a
    script under /static/ could control only /static/). Never cached: a browser checks it for updates
    on every navigation, and a stale copy must not outlive a deploy."""
    response = HttpResponse(_service_worker_source(), content_type="text/javascript; charset=utf-8")
    response["Cache-Control"] = "no-cache, max-age=0"
    response["Service-Worker-Allowed"] = "/dashboard/"
    return response


def _same_origin(request: HttpRequest) -> bool:
    """A navigation this site (or the browser itself: a notification's click) started — never another site's."""
    fetch_site = request.headers.get("Sec-Fetch-Site")
    if fetch_site is not None:
        return fetch_site in ("same-origin", "none")
    referer = request.headers.get("Referer", "")
    return bool(referer) and url_has_allowed_host_and_scheme(
        referer, allowed_hosts={request.get_host()}, require_https=request.is_secure()
    )


@require_http_methods(["GET", "POST"])
@login_required
def open_conversation(request: HttpRequest, public_id: uuid.UUID) -> HttpResponse:
    """A notification's click: the conversation's page, switching to its workspace when the agent is a
    member there (a notice may come from any of their workspaces); anyone else gets a 404. A GET
    switches only when this site or the browser started it; from another site it shows a button that
    POSTs (CSRF-checked), so no other site can switch an agent's workspace behind their back."""
    membership = (
        Membership.objects.select_related("workspace")
        .filter(
            user_id=int(request.user.pk or 0),
            workspace__chatbots__conversations__public_id=public_id,
        )
        .first()
    )
    if membership is None:
        raise Http404("No such conversation in your workspaces.")
    current = request.session.get(SESSION_WORKSPACE_KEY)
    if request.method == "POST" or current == membership.workspace_id or _same_origin(request):
        if current != membership.workspace_id:
            request.session[SESSION_WORKSPACE_KEY] = membership.workspace_id
        return redirect("dashboard:conversation", public_id=public_id)
    return render(
        request,
        "console/notification_open.html",
        {"workspace_name": membership.workspace.name, "public_id": public_id},
    )
