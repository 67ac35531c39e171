from django.apps import AppConfig


class NotificationsConfig(AppConfig):
    """Telling agents with no dashboard tab in front: Web Push subscriptions and their deliveries."""

    name = "notifications"

    def ready(self) -> None:
        from notifications import signals

        signals.connect()
