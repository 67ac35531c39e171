from __future__ import annotations

from django.apps import AppConfig


class ChatbotsConfig(AppConfig):
    name = "chatbots"
    verbose_name = "Workspaces, plans and chatbots"
