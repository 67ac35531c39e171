from __future__ import annotations

from django.apps import AppConfig
from django.core import checks


class ChatbotsConfig(AppConfig):
    name = "chatbots"
    verbose_name = "Workspaces, plans and chatbots"

    def ready(self) -> None:
        from chatbots.demo import DEMO_PASSWORD_CHECK_TAG, demo_password_check

        # A deploy check (it reads the database): `check --deploy`, and the run command before it starts.
        checks.register(demo_password_check, checks.Tags.security, DEMO_PASSWORD_CHECK_TAG, deploy=True)
