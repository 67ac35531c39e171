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
    created_at = models.DateTimeField(auto_now_add=True)
    last_success_at = models.DateTimeField(null=True, blank=True)
    # Consecutive failed deliveries; a subscription the push service says is gone (404/410) is deleted.
    failures = models.PositiveSmallIntegerField(default=0)

    class Meta:
        ordering = ["user", "-created_at"]

    def __str__(self) -> str:
        return f"Push subscription of {self.user_id}"
