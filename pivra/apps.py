from __future__ import annotations

from django.apps import AppConfig


class PivraConfig(AppConfig):
    name = "pivra"
    verbose_name = "Pivra"
