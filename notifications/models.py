"""Web Push subscriptions: one per browser an agent allowed to notify them."""

from __future__ import annotations

from django.conf import settings
from django.db import models


class PushSubscription(models.Model):
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="push_subscriptions")
    # The push service's URL for this browser (from PushSubscription.toJSON() in the page).
    endpoint = models.URLField(max_length=1000, unique=True)
    p256dh = models.CharField(max_length=200)
    auth = models.CharField(max_length=100)
    user_agent = models.CharField(max_length=400, blank=True)
    # The session that subscribed (pivra.console.session_validity.session_digest, never the key): its
    # logout deletes the subscription, so the next person at that browser is not told the agent's chats.
    session_digest = models.CharField(max_length=64, blank=True, db_index=True)
    # When that session expires: a push after it is not sent and the subscription is deleted (a
    # subscription must not outlive the sign-in it was made under).
    session_expires_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    # Consecutive permanent failures of this subscription (notifications.webpush); 404/410 delete at once.
    failures = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["user", "-created_at"]

    def __str__(self) -> str:
        return f"Push subscription of {self.user_id}"
