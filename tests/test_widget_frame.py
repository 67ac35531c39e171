"""The chat frame: embeddable only by the chatbot's allowed sites, whatever reached the database."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from chatbots.models import Chatbot
from chatbots.services import chatbot_set_allowed_origins
from tests.factories import Personas, chatbot_admin_form

pytestmark = pytest.mark.django_db
OWN = {"http://127.0.0.1:8000", "http://testserver"}  # PIVRA_PUBLIC_URL, and the host this request reached


def _frame_ancestors(response) -> set[str]:
    directives = {d.strip().split(" ", 1)[0]: d.strip() for d in response["Content-Security-Policy"].split(";")}
    return set(directives["frame-ancestors"].split()[1:])


def test_the_frame_may_be_embedded_by_exactly_the_chatbots_sites(client: Client, personas: Personas) -> None:
    bot = chatbot_set_allowed_origins(
        chatbot=personas.chatbot, origins=["https://Shop.Example/", "http://b.example:8080"]
    )
    response = client.get(f"/widget/frame/{bot.public_key}/", {"origin": "https://shop.example"})
    assert response.status_code == 200
    assert _frame_ancestors(response) == {"https://shop.example", "http://b.example:8080", *OWN}
    assert "X-Frame-Options" not in response  # frame-ancestors replaces it


def test_an_unlisted_site_gets_a_readable_403(client: Client, personas: Personas) -> None:
    bot = chatbot_set_allowed_origins(chatbot=personas.chatbot, origins=["https://shop.example"])
    for origin in ("https://evil.example", "", "not an origin", "https://a:99999"):
        response = client.get(f"/widget/frame/{bot.public_key}/", {"origin": origin})
        assert response.status_code == 403, origin
        assert "This website is not allowed to show this chat." in response.content.decode()
        assert _frame_ancestors(response) == {"https://shop.example", *OWN}


def test_a_stored_value_that_is_no_plain_origin_never_reaches_the_header(client: Client, personas: Personas) -> None:
    # Written past the forms (an older row, a script): the view must not trust it.
    Chatbot.objects.filter(pk=personas.chatbot.pk).update(
        allowed_origins=["https://shop.example", "*", "https://a; script-src *", "https://x.example/path", "data:"]
    )
    response = client.get(f"/widget/frame/{personas.chatbot.public_key}/", {"origin": "https://shop.example"})
    assert response.status_code == 200
    assert _frame_ancestors(response) == {"https://shop.example", *OWN}
    assert "script-src *" not in response["Content-Security-Policy"]


@pytest.mark.parametrize("bad", ['["*"]', '["https://a; script-src *"]', '["https://ok.example", "ftp://x"]', '"x"'])
def test_the_admin_refuses_what_is_not_a_site_address(
    client: Client, staff_user: User, personas: Personas, bad: str
) -> None:
    bot = chatbot_set_allowed_origins(chatbot=personas.chatbot, origins=["https://shop.example"])
    client.force_login(staff_user)
    response = client.post(
        reverse("admin:chatbots_chatbot_change", args=[bot.pk]), chatbot_admin_form(bot, allowed_origins=bad)
    )
    assert response.status_code == 200  # the form again, with the error
    assert "errorlist" in response.content.decode()
    bot.refresh_from_db()
    assert bot.allowed_origins == ["https://shop.example"]


def test_the_admin_stores_origins_normalised(client: Client, staff_user: User, personas: Personas) -> None:
    bot = personas.chatbot
    client.force_login(staff_user)
    form = chatbot_admin_form(
        bot, allowed_origins='["https://Shop.Example/", "https://shop.example", "http://b.example:8080"]'
    )
    response = client.post(reverse("admin:chatbots_chatbot_change", args=[bot.pk]), form)
    assert response.status_code == 302, response.content.decode()[-2000:]
    bot.refresh_from_db()
    assert bot.allowed_origins == ["http://b.example:8080", "https://shop.example"]


def _general_form(bot: Chatbot, allowed_origins: str) -> dict[str, str]:
    return {
        "section": "general",
        "chatbot": str(bot.pk),
        "name": bot.name,
        "greeting": bot.greeting,
        "accent_color": bot.accent_color,
        "allowed_origins": allowed_origins,
        "ai_provider": bot.ai_provider,
        "fallback_message": bot.fallback_message,
    }


def test_the_dashboard_refuses_an_origin_that_would_add_a_csp_directive(client: Client, personas: Personas) -> None:
    bot = chatbot_set_allowed_origins(chatbot=personas.chatbot, origins=["https://shop.example"])
    client.force_login(personas.owner)
    response = client.post("/dashboard/settings/", _general_form(bot, "https://ok.example\nhttps://a; script-src *"))
    assert response.status_code == 200
    assert "is not a site address" in response.content.decode()
    bot.refresh_from_db()
    assert bot.allowed_origins == ["https://shop.example"]
    saved = client.post("/dashboard/settings/", _general_form(bot, "https://OK.example/\nhttp://b.example:8080"))
    assert saved.status_code == 302
    bot.refresh_from_db()
    assert bot.allowed_origins == ["http://b.example:8080", "https://ok.example"]
