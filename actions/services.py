"""Every state change of an action: create, update, pause, resume, rotate its secret, test, delete."""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx
from django.conf import settings
from django.contrib.auth.models import User
from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import transaction
from django.urls import reverse
from django.utils import timezone, translation
from django.utils.translation import gettext as _

from actions.events import EventType
from actions.messages import action_paused_email
from actions.models import Action, Delivery
from actions.network import url_allowed_literal
from actions.queue import enqueue_attempts_on_commit
from actions.samples import sample_payload
from actions.signing import secret_generate
from chatbots.features import workspace_has_feature
from chatbots.models import Chatbot, Membership, Workspace
from chatbots.plans import Feature
from pivra.errors import DomainError, Forbidden, NotFound

logger = logging.getLogger(__name__)

MAX_ACTIONS_PER_CHATBOT = 25
MAX_RECIPIENTS = 20
MAX_URL_LENGTH = 2000
SECRET_GRACE = timedelta(hours=24)
PAUSED_DELIVERY_ERROR = "Not sent: the action was paused."
_UNSAFE_URL_CHARS = re.compile(r"[\\\x00-\x1f\x7f\s]")


def _require_feature(workspace: Workspace) -> None:
    if not workspace_has_feature(workspace=workspace, feature=Feature.ACTIONS):
        raise Forbidden("plan_required", _("Actions are available on the Starter plan and above."))


def _clean_name(name: str) -> str:
    name = " ".join((name or "").split())
    if not name:
        raise DomainError("invalid_name", _("Give the action a name, e.g. “Alert the support team”."))
    if len(name) > 100:
        raise DomainError("invalid_name", _("Keep the name under 100 characters."))
    return name


def _clean_events(events: Iterable[str]) -> list[str]:
    chosen = {str(e) for e in events}
    unknown = chosen - set(EventType)
    if unknown:
        raise DomainError("invalid_events", _("Unknown event: %(events)s.") % {"events": ", ".join(sorted(unknown))})
    if not chosen:
        raise DomainError("invalid_events", _("Choose at least one event."))
    return [e.value for e in EventType if e.value in chosen]


def _clean_url(url: str) -> str:
    url = (url or "").strip()
    if not url:
        raise DomainError("invalid_url", _("Enter the URL to send to."))
    if len(url) > MAX_URL_LENGTH or _UNSAFE_URL_CHARS.search(url):
        raise DomainError("invalid_url", _("That URL is not valid."))
    try:
        scheme = httpx.URL(url).scheme
    except (httpx.InvalidURL, UnicodeError):
        raise DomainError("invalid_url", _("That URL is not valid.")) from None
    if scheme not in ("http", "https"):
        raise DomainError("invalid_url", _("Use an https:// (or http://) URL."))
    if not url_allowed_literal(url, allow_private=settings.WEBHOOK_ALLOW_PRIVATE):
        raise DomainError("invalid_url", _("That destination is not allowed: Pivra only sends to public addresses."))
    return url


def _clean_recipients(recipients: Iterable[str]) -> list[str]:
    cleaned: list[str] = []
    for raw in recipients:
        for address in re.split(r"[\s,;]+", raw or ""):
            if not address:
                continue
            try:
                validate_email(address)
            except ValidationError:
                raise DomainError(
                    "invalid_recipients", _("%(address)s is not an email address.") % {"address": repr(address)}
                ) from None
            if address.lower() not in (a.lower() for a in cleaned):
                cleaned.append(address)
    if not cleaned:
        raise DomainError("invalid_recipients", _("Add at least one email address."))
    if len(cleaned) > MAX_RECIPIENTS:
        raise DomainError("invalid_recipients", _("Use at most %(count)d recipients.") % {"count": MAX_RECIPIENTS})
    return cleaned


def _destination(kind: str, url: str, recipients: Iterable[str]) -> tuple[str, list[str]]:
    if kind == Action.Kind.EMAIL:
        return "", _clean_recipients(recipients)
    return _clean_url(url), []


def action_create(
    *,
    workspace: Workspace,
    chatbot: Chatbot,
    name: str,
    kind: str,
    events: Iterable[str],
    url: str = "",
    recipients: Iterable[str] = (),
    created_by: User | None = None,
) -> Action:
    """A new active action with a fresh signing secret; only on a plan that includes actions."""
    _require_feature(workspace)
    if chatbot.workspace_id != workspace.pk:
        raise NotFound("chatbot_not_found", _("No such chatbot in this workspace."))
    if kind not in Action.Kind.values:
        raise DomainError("invalid_kind", _("Choose email, webhook or Slack."))
    name, chosen = _clean_name(name), _clean_events(events)
    clean_url, clean_recipients = _destination(kind, url, recipients)
    with transaction.atomic():
        # The chatbot row serialises concurrent creations against the per-chatbot limit.
        Chatbot.objects.select_for_update().get(pk=chatbot.pk)
        if Action.objects.filter(chatbot=chatbot).count() >= MAX_ACTIONS_PER_CHATBOT:
            raise DomainError(
                "limit", _("A chatbot can have at most %(count)d actions.") % {"count": MAX_ACTIONS_PER_CHATBOT}
            )
        return Action.objects.create(
            workspace=workspace,
            chatbot=chatbot,
            name=name,
            kind=kind,
            events=chosen,
            url=clean_url,
            recipients=clean_recipients,
            secret=secret_generate(),
            created_by=created_by,
        )


@dataclass(frozen=True)
class ActionChanges:
    name: str
    events: list[str]
    url: str
    recipients: list[str]


def action_validate_update(
    *, action: Action, name: str, events: Iterable[str], url: str = "", recipients: Iterable[str] = ()
) -> ActionChanges:
    """What ``action_update`` would save, or the DomainError it would raise; changes nothing.
    Forms that must show errors before saving (the admin) call it first."""
    _require_feature(action.workspace)
    clean_name, chosen = _clean_name(name), _clean_events(events)
    clean_url, clean_recipients = _destination(action.kind, url, recipients)
    return ActionChanges(name=clean_name, events=chosen, url=clean_url, recipients=clean_recipients)


def action_update(
    *, action: Action, name: str, events: Iterable[str], url: str = "", recipients: Iterable[str] = ()
) -> Action:
    """Change what an action listens to and where it sends; its kind, chatbot and secret stay."""
    changes = action_validate_update(action=action, name=name, events=events, url=url, recipients=recipients)
    action.name, action.events = changes.name, changes.events
    action.url, action.recipients = changes.url, changes.recipients
    action.save(update_fields=["name", "events", "url", "recipients", "updated_at"])
    return action


def action_pause(*, action: Action, reason: str, notify_owners: bool = False, now: datetime | None = None) -> bool:
    """Stop sending: queued deliveries are closed as not sent. True only for the caller that paused
    it (a second pause, or a race with another worker, changes nothing and mails no one)."""
    now = now or timezone.now()
    with transaction.atomic():
        won = Action.objects.filter(pk=action.pk, status=Action.Status.ACTIVE).update(
            status=Action.Status.PAUSED, paused_reason=reason[:300], paused_at=now, updated_at=now
        )
        if won:
            Delivery.objects.filter(action_id=action.pk, status=Delivery.Status.PENDING, is_test=False).update(
                status=Delivery.Status.FAILED, next_attempt_at=None, last_error=PAUSED_DELIVERY_ERROR, updated_at=now
            )
            if notify_owners:
                from actions.tasks import notify_action_paused

                action_id = action.pk
                transaction.on_commit(lambda: notify_action_paused.delay(action_id), robust=True)
    action.refresh_from_db()
    return bool(won)


def action_resume(*, action: Action) -> Action:
    """Back to active with a clean health record (failing_since cleared)."""
    _require_feature(action.workspace)
    Action.objects.filter(pk=action.pk).update(
        status=Action.Status.ACTIVE, paused_reason="", paused_at=None, failing_since=None, updated_at=timezone.now()
    )
    action.refresh_from_db()
    return action


def action_delete(*, action: Action) -> None:
    """Remove the action with its delivery log."""
    action.delete()


def action_rotate_secret(*, action: Action, now: datetime | None = None) -> str:
    """A new signing secret; the old one keeps signing beside it for 24 hours so receivers can switch."""
    now = now or timezone.now()
    new = secret_generate()
    with transaction.atomic():
        current = Action.objects.select_for_update().get(pk=action.pk)
        Action.objects.filter(pk=action.pk).update(
            secret=new, previous_secret=current.secret, previous_secret_expires_at=now + SECRET_GRACE, updated_at=now
        )
    action.refresh_from_db()
    return new


def action_signing_secrets(*, action: Action, now: datetime | None = None) -> list[str]:
    """The secrets that sign right now: the current one, and the previous one during its grace period."""
    now = now or timezone.now()
    secrets = [action.secret]
    if action.previous_secret and action.previous_secret_expires_at and action.previous_secret_expires_at > now:
        secrets.append(action.previous_secret)
    return secrets


def action_send_test(*, action: Action, event_type: str | None = None) -> Delivery:
    """Queue one attempt with an example payload (flagged "test": true). Allowed while paused, so a
    fixed destination can be checked before resuming."""
    _require_feature(action.workspace)
    chosen = event_type or (action.events[0] if action.events else EventType.CONVERSATION_ESCALATED.value)
    if chosen not in set(EventType):
        raise DomainError("invalid_events", _("Unknown event: %(events)s.") % {"events": chosen})
    now = timezone.now()
    with transaction.atomic():
        delivery = Delivery.objects.create(
            action=action,
            event=None,
            event_type=chosen,
            is_test=True,
            test_payload=sample_payload(event_type=chosen, chatbot=action.chatbot),
            webhook_id=f"msg_{uuid.uuid4().hex}",
            max_attempts=1,
            next_attempt_at=now,
            enqueued_at=now,
        )
        enqueue_attempts_on_commit([delivery.pk])
    return delivery


def action_notify_paused(*, action_id: int) -> int:
    """Email the workspace owners that an action was paused automatically; returns how many were mailed."""
    action = Action.objects.select_related("chatbot").filter(pk=action_id).first()
    if action is None or action.status != Action.Status.PAUSED:
        return 0
    owners = list(
        Membership.objects.filter(workspace_id=action.workspace_id, role=Membership.Role.OWNER)
        .exclude(user__email="")
        .values_list("user__email", flat=True)
    )
    if not owners:
        return 0
    url = settings.PUBLIC_URL + reverse("dashboard:action-detail", args=[action.pk])
    # To the workspace's owners at once: worded in the chatbot's default language (as the action's own emails).
    with translation.override(action.chatbot.default_language or settings.LANGUAGE_CODE):
        message = action_paused_email(
            action_name=action.name,
            chatbot=action.chatbot.name,
            reason=action.paused_reason,
            url=url,
            recipients=owners,
        )
    message.send(fail_silently=False)
    return len(owners)
