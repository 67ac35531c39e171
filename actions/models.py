"""The transactional outbox, the actions customers configure, and the delivery log.

An ``OutboxEvent`` is written in the same transaction as the state change it records. The
dispatcher fans each one out to a ``Delivery`` per matching active ``Action``; every try at
sending a delivery is a ``DeliveryAttempt`` row, which is the log customers read.
"""

from __future__ import annotations

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils.translation import gettext_lazy as _

from actions.events import EVENT_INFO, EventType
from chatbots.models import Chatbot, Workspace
from pivra.crypto import EncryptedTextField

EVENT_CHOICES = [(t.value, t.value) for t in EventType]


def url_mask(url: str) -> str:
    """``https://hooks.slack.com/…wxyz``: enough to recognise, never enough to post. Webhook and
    Slack URLs are both credentials (capability URLs), so pages only ever show this."""
    if not url:
        return ""
    scheme, _, rest = url.partition("://")
    host = rest.split("/", 1)[0] if rest else ""
    return f"{scheme}://{host}/…{url[-4:]}" if host else f"…{url[-4:]}"


class OutboxEvent(models.Model):
    # The id is the event's identity everywhere (webhook-id is derived from it), stable across retries.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=40, choices=EVENT_CHOICES)
    # Plain ids, not foreign keys: actions is told of events and never reaches into domain apps.
    workspace_id = models.BigIntegerField(db_index=True)
    chatbot_id = models.BigIntegerField(null=True, blank=True)
    payload = models.JSONField()
    created_at = models.DateTimeField(auto_now_add=True, db_index=True)
    dispatched_at = models.DateTimeField(null=True, blank=True, db_index=True)

    class Meta:
        ordering = ["created_at"]

    def __str__(self) -> str:
        return f"{self.type} {self.id}"


class Action(models.Model):
    """What to do when an event fires: email a team, call a webhook, or post to Slack."""

    class Kind(models.TextChoices):
        EMAIL = "email", _("Email")
        WEBHOOK = "webhook", _("Webhook")
        SLACK = "slack", _("Slack")

    class Status(models.TextChoices):
        ACTIVE = "active", _("Active")
        PAUSED = "paused", _("Paused")

    workspace = models.ForeignKey(Workspace, on_delete=models.CASCADE, related_name="actions")
    chatbot = models.ForeignKey(Chatbot, on_delete=models.CASCADE, related_name="actions")
    name = models.CharField(max_length=100)
    kind = models.CharField(max_length=10, choices=Kind.choices)
    events = models.JSONField(default=list, help_text=_("Event types this action subscribes to."))
    # Encrypted at rest: a Slack incoming-webhook URL is itself a credential, and webhook URLs are
    # often capability URLs too. Randomised encryption: never filter on it.
    url = EncryptedTextField(blank=True, help_text=_("Webhook or Slack incoming-webhook URL."))
    recipients = models.JSONField(default=list, blank=True, help_text=_("Email addresses (email actions)."))
    # Standard Webhooks signing secret (whsec_…). Encrypted at rest, decryptable because HMAC needs
    # it; the console shows it once, in the response to its creation or rotation.
    secret = EncryptedTextField(editable=False)
    previous_secret = EncryptedTextField(blank=True, editable=False)
    previous_secret_expires_at = models.DateTimeField(null=True, blank=True, editable=False)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.ACTIVE, db_index=True)
    paused_reason = models.CharField(max_length=300, blank=True)
    paused_at = models.DateTimeField(null=True, blank=True)
    # Set by the first failed delivery after a success; an action failing for a day is paused.
    failing_since = models.DateTimeField(null=True, blank=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["chatbot", "name", "id"]
        indexes = [models.Index(fields=["chatbot", "status"], name="action_chatbot_status")]

    def __str__(self) -> str:
        return self.name

    @property
    def is_active(self) -> bool:
        return self.status == self.Status.ACTIVE

    @property
    def event_labels(self) -> list[tuple[str, str]]:
        return [(e, str(EVENT_INFO[e][0]) if e in EVENT_INFO else e) for e in self.events]

    @property
    def destination(self) -> str:
        """Where it sends, as pages show it: a webhook or Slack URL is a credential, so only its
        scheme, host and tail are shown."""
        if self.kind == self.Kind.EMAIL:
            return ", ".join(self.recipients)
        return url_mask(self.url)


class Delivery(models.Model):
    """One event for one action. ``pending`` → ``sending`` (claimed by a worker, lease running) →
    ``succeeded``, or back to ``pending`` with ``next_attempt_at`` for a retry, or ``failed``."""

    class Status(models.TextChoices):
        PENDING = "pending", _("Queued")
        SENDING = "sending", _("Sending")
        SUCCEEDED = "succeeded", _("Delivered")
        FAILED = "failed", _("Failed")

    action = models.ForeignKey(Action, on_delete=models.CASCADE, related_name="deliveries")
    event = models.ForeignKey(OutboxEvent, on_delete=models.CASCADE, null=True, blank=True, related_name="deliveries")
    event_type = models.CharField(max_length=40, choices=EVENT_CHOICES)
    is_test = models.BooleanField(default=False)
    test_payload = models.JSONField(null=True, blank=True)
    # The Standard Webhooks message id: the same for every attempt, so receivers can deduplicate.
    webhook_id = models.CharField(max_length=64, db_index=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveSmallIntegerField(default=0)
    max_attempts = models.PositiveSmallIntegerField()
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # When a task for this row was last handed to the broker; the sweep re-queues stale ones.
    enqueued_at = models.DateTimeField(null=True, blank=True)
    # While sending: past this, the worker is presumed dead and another may take the row over.
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    last_attempt_at = models.DateTimeField(null=True, blank=True)
    last_status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    last_duration_ms = models.PositiveIntegerField(null=True, blank=True)
    last_error = models.CharField(max_length=500, blank=True)
    delivered_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at", "-id"]
        verbose_name_plural = _("deliveries")
        constraints = [
            models.UniqueConstraint(
                fields=["action", "event"], condition=models.Q(event__isnull=False), name="delivery_once_per_action"
            )
        ]
        indexes = [
            models.Index(fields=["status", "next_attempt_at"], name="delivery_due"),
            models.Index(fields=["action", "-created_at"], name="delivery_log"),
        ]

    def __str__(self) -> str:
        return f"{self.event_type} → {self.action_id} ({self.status})"

    @property
    def payload(self) -> dict[str, Any]:
        if self.event is not None:
            return dict(self.event.payload)
        return dict(self.test_payload or {})


class DeliveryAttempt(models.Model):
    class Outcome(models.TextChoices):
        SENDING = "sending", _("In flight")
        SUCCEEDED = "succeeded", _("Delivered")
        FAILED = "failed", _("Failed")
        INTERRUPTED = "interrupted", _("Interrupted")

    delivery = models.ForeignKey(Delivery, on_delete=models.CASCADE, related_name="attempt_log")
    number = models.PositiveSmallIntegerField()
    outcome = models.CharField(max_length=12, choices=Outcome.choices, default=Outcome.SENDING)
    started_at = models.DateTimeField()
    finished_at = models.DateTimeField(null=True, blank=True)
    duration_ms = models.PositiveIntegerField(null=True, blank=True)
    status_code = models.PositiveSmallIntegerField(null=True, blank=True)
    error = models.CharField(max_length=500, blank=True)
    response_excerpt = models.TextField(blank=True)
    next_retry_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["delivery", "number"]
        constraints = [models.UniqueConstraint(fields=["delivery", "number"], name="attempt_number_unique")]

    def __str__(self) -> str:
        return f"attempt {self.number} of delivery {self.delivery_id}: {self.outcome}"
