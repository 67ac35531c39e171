"""Web Push subscriptions: saved and deleted per user, checked before they are stored.

A subscription's endpoint is a URL the browser hands the page, so for the server it is attacker
input: it must be one of the push services of ``settings.WEB_PUSH_HOSTS`` (``notifications.endpoints``;
checked again before every send, and ``pivra.outbound`` vets the resolved address), and its keys must
be what the encryption needs — a P-256 point and a 16-byte secret — or the send would fail later.
Only a member of a workspace may subscribe; an endpoint another user stored is taken over only by the
same browser (the same keys). A subscription ends with the session it was made under: its logout, its
expiry, and any password change or deactivation of its user.
"""

from __future__ import annotations

import re
from datetime import datetime

from django.contrib.auth.models import User
from django.db import IntegrityError, transaction
from django.utils.translation import gettext as _

from chatbots.models import Membership
from notifications.endpoints import ENDPOINT_PATTERN, endpoint_allowed
from notifications.models import PushSubscription
from notifications.vapid import b64url_decode
from pivra.errors import DomainError
from pivra.outbound import outbound_allow_private, url_allowed_literal

# Browsers one agent may have subscribed at once; the oldest beyond it is dropped (a reinstalled
# browser subscribes again, and refusing would silence the agent's newest browser instead).
MAX_SUBSCRIPTIONS_PER_USER = 10
MAX_ENDPOINT_LENGTH = 1000
MAX_KEY_LENGTH = 200
ENDPOINT_RE = re.compile(ENDPOINT_PATTERN)


def _invalid(detail: str) -> DomainError:
    return DomainError("invalid_subscription", detail)


def _check_endpoint(endpoint: str) -> str:
    endpoint = endpoint.strip()
    if not ENDPOINT_RE.fullmatch(endpoint):
        raise _invalid(
            _("The endpoint must be a URL of at most %(count)d printable ASCII characters.")
            % {"count": MAX_ENDPOINT_LENGTH}
        )
    allow_private = outbound_allow_private()
    if not endpoint_allowed(endpoint, allow_private=allow_private) or not url_allowed_literal(
        endpoint, allow_private=allow_private
    ):
        raise _invalid(_("That push endpoint is not allowed: only https URLs of the browsers' push services are."))
    return endpoint


def _check_keys(p256dh: str, auth: str) -> tuple[str, str]:
    from cryptography.hazmat.primitives.asymmetric import ec

    if len(p256dh) > MAX_KEY_LENGTH or len(auth) > MAX_KEY_LENGTH:
        raise _invalid(_("The subscription's keys are too long."))
    try:
        point = b64url_decode(p256dh)
        ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), point)
        secret = b64url_decode(auth)
    except ValueError:
        raise _invalid(_("The subscription's keys are not valid (p256dh: a P-256 point, auth: 16 bytes).")) from None
    if len(point) != 65 or len(secret) != 16:
        raise _invalid(_("The subscription's keys are not valid (p256dh: a P-256 point, auth: 16 bytes)."))
    return p256dh.strip(), auth.strip()


def push_subscription_save(
    *,
    user: User,
    endpoint: str,
    p256dh: str,
    auth: str,
    user_agent: str = "",
    session_digest: str = "",
    session_expires_at: datetime | None = None,
) -> PushSubscription:
    """Store (or refresh) this browser's subscription for ``user``. An endpoint is one browser: when
    another user had subscribed it, it becomes ``user``'s only when the keys are the same too (that
    browser, signed in as someone else); knowing someone's endpoint alone takes nothing over."""
    if not Membership.objects.filter(user=user).exists():
        raise DomainError("no_workspace", _("Only a member of a workspace can be notified."), status=403)
    endpoint = _check_endpoint(endpoint)
    p256dh, auth = _check_keys(p256dh, auth)
    fields = {
        "user": user,
        "p256dh": p256dh,
        "auth": auth,
        "user_agent": user_agent[:400],
        "session_digest": session_digest[:64],
        "session_expires_at": session_expires_at,
        "failures": 0,
    }
    for attempt in (1, 2):
        try:
            with transaction.atomic():
                existing = PushSubscription.objects.select_for_update().filter(endpoint=endpoint).first()
                if existing is not None and existing.user_id != user.pk:
                    if (existing.p256dh, existing.auth) != (p256dh, auth):
                        raise DomainError(
                            "endpoint_taken", _("This push endpoint belongs to another subscription."), status=409
                        )
                    # The same browser, signed in as someone else: a new row (and id), so a push
                    # queued for the previous user can never reach this one.
                    existing.delete()
                    existing = None
                if existing is None:
                    subscription = PushSubscription.objects.create(endpoint=endpoint, **fields)
                else:
                    for name, value in fields.items():
                        setattr(existing, name, value)
                    existing.save()
                    subscription = existing
                keep = PushSubscription.objects.filter(user=user).order_by("-created_at", "-id")
                stale = keep.exclude(pk=subscription.pk).values_list("pk", flat=True)[MAX_SUBSCRIPTIONS_PER_USER - 1 :]
                PushSubscription.objects.filter(pk__in=list(stale)).delete()
            return subscription
        except IntegrityError:  # two saves of one endpoint at once: the second updates the first's row
            if attempt == 2:
                raise
    raise AssertionError("unreachable")


def push_subscription_delete(*, user: User, endpoint: str) -> bool:
    """Forget this browser's subscription, if it is ``user``'s (another's is never touched)."""
    deleted, _ = PushSubscription.objects.filter(user=user, endpoint=endpoint.strip()[:MAX_ENDPOINT_LENGTH]).delete()
    return deleted > 0


def push_subscriptions_forget_session(*, session_digest: str) -> int:
    """A logout: the browsers subscribed under that session stop being told."""
    if not session_digest:
        return 0
    deleted, _ = PushSubscription.objects.filter(session_digest=session_digest).delete()
    return deleted


def push_subscriptions_forget_user(*, user_id: int) -> int:
    """A password change or deactivation ends every session of the user: every browser stops being told."""
    deleted, _ = PushSubscription.objects.filter(user_id=user_id).delete()
    return deleted
