"""A request for a person: pending → active (claimed) → resolved; pending → busy (timed out) → active."""

from __future__ import annotations

from django.conf import settings
from django.db import models
from django.db.models import Q
from django.utils.translation import gettext_lazy as _

from chatbots.models import Chatbot
from conversations.models import Conversation


class Handoff(models.Model):
    class Status(models.TextChoices):
        PENDING = "pending", _("Waiting")
        ACTIVE = "active", _("Claimed")
        BUSY = "busy", _("Team busy (timed out)")
        RESOLVED = "resolved", _("Resolved")

    class Trigger(models.TextChoices):
        BUTTON = "button", _("Button")
        KEYWORD = "keyword", _("Keyword")

    conversation = models.OneToOneField(Conversation, on_delete=models.CASCADE, related_name="handoff")
    # Denormalised from the conversation so queue queries are scoped without joins.
    chatbot = models.ForeignKey(Chatbot, on_delete=models.CASCADE, related_name="handoffs")
    workspace_id = models.BigIntegerField(db_index=True)
    status = models.CharField(max_length=10, choices=Status.choices, default=Status.PENDING)
    trigger = models.CharField(max_length=10, choices=Trigger.choices)
    requested_at = models.DateTimeField()
    # When it last started waiting in line: the request, a requeue (release, agent removed), a
    # transfer nobody accepted. The expected wait is measured from it (handoff/queue_position.py).
    queued_at = models.DateTimeField()
    deadline_at = models.DateTimeField(help_text=_("When a still-pending handoff turns to Team busy."))
    claimed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="claimed_handoffs"
    )
    claimed_at = models.DateTimeField(null=True, blank=True)
    timed_out_at = models.DateTimeField(null=True, blank=True)
    resolved_at = models.DateTimeField(null=True, blank=True)
    resolved_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # Why a handoff is Team busy: "timeout", "offline" (nobody online) or "after_hours".
    busy_reason = models.CharField(max_length=20, blank=True)
    # Why it was resolved: "agent", "idle", "superseded", ...
    resolve_reason = models.CharField(max_length=20, blank=True)
    # An open offer of a pending handoff to one agent: a transfer ("transfer") or round robin ("route").
    # While it runs only that agent may claim; when it expires the handoff goes to the next or to everyone.
    offered_to = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    offered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    offer_kind = models.CharField(max_length=10, blank=True)
    offer_expires_at = models.DateTimeField(null=True, blank=True)
    routing_tried = models.JSONField(default=list, blank=True, help_text=_("User ids already offered by round robin."))
    # The last visitor or agent message while active; the idle sweep resolves what has been silent too long.
    last_message_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-requested_at"]
        indexes = [
            # The sweep scans pending handoffs by deadline.
            models.Index(fields=["deadline_at"], condition=Q(status="pending"), name="handoff_pending_deadline"),
            models.Index(fields=["workspace_id", "status"], name="handoff_workspace_status"),
            models.Index(
                fields=["offer_expires_at"], condition=Q(offered_to__isnull=False), name="handoff_offer_expiry"
            ),
            models.Index(fields=["last_message_at"], condition=Q(status="active"), name="handoff_active_idle"),
            # The line in order (queue positions read at most the first 50 of it) and the recent claims
            # (the median wait reads the newest 50).
            models.Index(
                fields=["workspace_id", "requested_at", "id"], condition=Q(status="pending"), name="handoff_line"
            ),
            models.Index(
                fields=["workspace_id", "claimed_at"],
                condition=Q(claimed_at__isnull=False),
                name="handoff_workspace_claimed",
            ),
        ]

    def __str__(self) -> str:
        return f"Handoff of {self.conversation} ({self.status})"

    @property
    def is_open(self) -> bool:
        return self.status != self.Status.RESOLVED
