from __future__ import annotations

from django.apps import AppConfig


class PivraConfig(AppConfig):
    name = "pivra"
    verbose_name = "Pivra"

    def ready(self) -> None:
        from pivra import push_drop  # noqa: F401  (registers its deploy check)
        from pivra.console import revocation

        revocation.connect()
