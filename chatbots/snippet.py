"""The one-tag embed snippet customers paste into their site."""

from __future__ import annotations

from django.conf import settings
from django.utils.html import format_html
from django.utils.safestring import SafeString

from chatbots.models import Chatbot


def embed_snippet(chatbot: Chatbot, *, base_url: str | None = None) -> SafeString:
    base = (base_url or settings.PUBLIC_URL).rstrip("/")
    return format_html(
        '<script src="{}/static/widget/loader.js" data-pivra-key="{}" async></script>', base, chatbot.public_key
    )
