"""Allowed websites end up in the frame's ``frame-ancestors`` header: every service stores only plain origins."""

from __future__ import annotations

import pytest

from chatbots.models import Chatbot
from chatbots.services import chatbot_set_allowed_origins, chatbot_update_general, normalize_origin
from pivra.errors import DomainError
from tests.factories import Personas

pytestmark = pytest.mark.django_db

NOT_ORIGINS = ["*", "https://a; script-src *", "https://a b.example", "https://a:99999", "https://a..b", "http://[::1]"]


def _save_general(bot: Chatbot, origins: list[str]) -> Chatbot:
    return chatbot_update_general(
        chatbot=bot,
        name=bot.name,
        greeting=bot.greeting,
        accent_color=bot.accent_color,
        allowed_origins=origins,
        ai_provider=bot.ai_provider,
        llm_base_url=bot.llm_base_url,
        llm_model=bot.llm_model,
        llm_api_key=None,
        fallback_message=bot.fallback_message,
    )


@pytest.mark.parametrize("value", NOT_ORIGINS)
def test_the_dashboards_save_refuses_what_would_widen_the_frame_header(personas: Personas, value: str) -> None:
    bot = chatbot_set_allowed_origins(chatbot=personas.chatbot, origins=["https://shop.example"])
    with pytest.raises(DomainError) as refused:
        _save_general(bot, ["https://ok.example", value])
    assert refused.value.code == "invalid_origin"
    bot.refresh_from_db()
    assert bot.allowed_origins == ["https://shop.example"]


@pytest.mark.parametrize("value", NOT_ORIGINS)
def test_setting_the_origins_directly_refuses_them_too(personas: Personas, value: str) -> None:
    with pytest.raises(DomainError):
        chatbot_set_allowed_origins(chatbot=personas.chatbot, origins=[value])


def test_saved_origins_are_normal_forms_browsers_send(personas: Personas) -> None:
    bot = _save_general(personas.chatbot, ["https://Shop.Example/", "http://b.example:8080", "https://bücher.example"])
    assert bot.allowed_origins == ["http://b.example:8080", "https://shop.example", "https://xn--bcher-kva.example"]


@pytest.mark.parametrize("value", [*NOT_ORIGINS, "https://x.example/path", "ftp://x.org", ""])
def test_the_frame_view_and_the_services_share_one_rule(value: str) -> None:
    with pytest.raises(DomainError):
        normalize_origin(value)
