from __future__ import annotations

from django.apps import AppConfig


class HandoffConfig(AppConfig):
    name = "handoff"
    verbose_name = "Human handoff"

    def ready(self) -> None:
        from handoff import departures

        departures.connect()
