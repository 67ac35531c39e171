"""The transactional outbox: domain events written in the same transaction as the state change."""

from __future__ import annotations

import uuid

from django.db import models

from actions.events import EventType


class OutboxEvent(models.Model):
    # The id is the event's identity everywhere (webhook-id is derived from it), stable across retries.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4, editable=False)
    type = models.CharField(max_length=40, choices=[(t.value, t.value) for t in EventType])
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
