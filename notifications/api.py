"""The console API of this app: save and forget this browser's Web Push subscription.

Session-authenticated and CSRF-checked like the rest of the console API; mounted under /api/console/.
Per user: a subscription is only ever the signed-in agent's (a member of a workspace), and at most
``MAX_SUBSCRIPTIONS_PER_USER`` are kept (the oldest go)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.sessions.backends.db import SessionStore as DatabaseSessionStore
from django.http import HttpRequest
from django.utils.translation import gettext as _
from ninja import Router, Schema, Status
from ninja.security import django_auth
from pydantic import Field

from notifications.endpoints import ENDPOINT_PATTERN
from notifications.subscriptions import (
    MAX_ENDPOINT_LENGTH,
    MAX_KEY_LENGTH,
    push_subscription_delete,
    push_subscription_save,
)
from pivra.api_schema import NO_NUL, ApiSchema, error_responses
from pivra.console.session_validity import session_digest
from pivra.errors import DomainError

router = Router(tags=["console"], auth=django_auth)
ERRORS = error_responses()


class SubscriptionKeys(ApiSchema):
    p256dh: str = Field(max_length=MAX_KEY_LENGTH, pattern=NO_NUL)
    auth: str = Field(max_length=MAX_KEY_LENGTH, pattern=NO_NUL)


class SubscriptionIn(ApiSchema):
    """What ``PushSubscription.toJSON()`` gives in the browser (``expirationTime`` is ignored)."""

    endpoint: str = Field(max_length=MAX_ENDPOINT_LENGTH, pattern=ENDPOINT_PATTERN)
    keys: SubscriptionKeys
    expirationTime: float | None = None


class EndpointIn(ApiSchema):
    endpoint: str = Field(max_length=MAX_ENDPOINT_LENGTH, pattern=NO_NUL)


class SubscriptionOut(Schema):
    id: int
    created: bool = Field(description="False when this browser's subscription was already stored.")


class DeletedOut(Schema):
    deleted: bool


def _session_expiry(request: HttpRequest) -> datetime | None:
    """When this session ends: the stored row's date (exact), else the store's own answer."""
    store = request.session
    key = store.session_key
    if key and isinstance(store, DatabaseSessionStore):
        expires: datetime | None = (
            store.model.objects.filter(session_key=key).values_list("expire_date", flat=True).first()
        )
        if expires is not None:
            return expires
    return store.get_expiry_date()


def _enabled() -> None:
    if not settings.WEB_PUSH_ENABLED:
        raise DomainError("web_push_disabled", _("Web Push is turned off on this server (PIVRA_WEB_PUSH)."), status=409)


@router.post(
    "/push-subscriptions",
    response={200: SubscriptionOut, 201: SubscriptionOut, **ERRORS},
    summary="Save this browser's Web Push subscription",
)
def save_subscription(request: HttpRequest, payload: SubscriptionIn) -> Status:
    _enabled()
    user: User = request.auth  # type: ignore[attr-defined]
    session_key = request.session.session_key or ""
    existed = user.push_subscriptions.filter(endpoint=payload.endpoint.strip()).exists()
    subscription = push_subscription_save(
        user=user,
        endpoint=payload.endpoint,
        p256dh=payload.keys.p256dh,
        auth=payload.keys.auth,
        user_agent=request.headers.get("User-Agent", ""),
        session_digest=session_digest(session_key) if session_key else "",
        session_expires_at=_session_expiry(request),
    )
    return Status(200 if existed else 201, {"id": subscription.pk, "created": not existed})


@router.delete(
    "/push-subscriptions",
    response={200: DeletedOut, **ERRORS},
    summary="Forget this browser's Web Push subscription",
)
def delete_subscription(request: HttpRequest, payload: EndpointIn) -> dict[str, Any]:
    user: User = request.auth  # type: ignore[attr-defined]
    return {"deleted": push_subscription_delete(user=user, endpoint=payload.endpoint)}
