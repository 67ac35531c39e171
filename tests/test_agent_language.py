"""Issue 17: an agent chooses the console language on their profile page; the choice wins over the browser."""

from __future__ import annotations

import pytest
from django.test import Client

from accounts.languages import agent_language, agent_language_set
from tests.factories import Personas

pytestmark = pytest.mark.django_db

URL = "/dashboard/profile/"


def test_the_profile_page_needs_a_login(client: Client) -> None:
    response = client.get(URL)
    assert response.status_code == 302 and "/accounts/login/" in response["Location"]


def test_the_profile_page_offers_browser_default_and_every_language(client: Client, personas: Personas) -> None:
    client.force_login(personas.teammate)
    page = client.get(URL).content.decode()
    for text in ("Your profile", "Console language", "Browser default", "Français", "العربية", "Português (Brasil)"):
        assert text in page
    assert '<option value="" selected>' in page


def test_an_agent_who_chose_french_gets_french_console_pages_with_an_english_browser(
    client: Client, personas: Personas
) -> None:
    client.force_login(personas.teammate)
    response = client.post(URL, {"language": "fr"})
    assert response.status_code == 302 and response["Location"] == URL
    assert agent_language(user=personas.teammate) == "fr"
    for page in ("/dashboard/", "/dashboard/settings/", URL):
        response = client.get(page, HTTP_ACCEPT_LANGUAGE="en-US,en;q=0.9")
        assert response.status_code == 200
        assert response.headers["Content-Language"] == "fr"
        assert response.wsgi_request.LANGUAGE_CODE == "fr"
    # The choice is shown selected on the profile page.
    assert '<option value="fr" selected>' in client.get(URL).content.decode()


def test_browser_default_follows_accept_language(client: Client, personas: Personas) -> None:
    agent_language_set(user=personas.teammate, language="de")
    client.force_login(personas.teammate)
    assert client.post(URL, {"language": ""}).status_code == 302
    assert agent_language(user=personas.teammate) == ""
    response = client.get("/dashboard/", HTTP_ACCEPT_LANGUAGE="es-ES,es;q=0.9,en;q=0.5")
    assert response.headers["Content-Language"] == "es"
    response = client.get("/dashboard/", HTTP_ACCEPT_LANGUAGE="nl")
    assert response.headers["Content-Language"] == "nl"
    response = client.get("/dashboard/")  # no header: the site's language
    assert response.headers["Content-Language"] == "en"


@pytest.mark.parametrize("code", ["xx", "fr-FR", "FR", "<b>fr</b>", "a" * 300])
def test_a_bad_language_code_is_refused_with_a_readable_error(client: Client, personas: Personas, code: str) -> None:
    agent_language_set(user=personas.teammate, language="en")  # English chosen: the refusal reads in English
    client.force_login(personas.teammate)
    response = client.post(URL, {"language": code})
    assert response.status_code == 200
    assert "Choose one of the languages offered." in response.content.decode()
    assert agent_language(user=personas.teammate) == "en"


def test_the_choice_is_the_agents_own_in_every_workspace(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    client.post(URL, {"language": "ar"})
    assert agent_language(user=personas.owner) == "ar"
    assert agent_language(user=personas.teammate) == ""
    client.force_login(personas.teammate)
    response = client.get("/dashboard/", HTTP_ACCEPT_LANGUAGE="en")
    assert response.headers["Content-Language"] == "en"


def test_a_user_in_no_workspace_can_still_choose(client: Client, personas: Personas) -> None:
    from tests.factories import make_user

    loner = make_user("loner")
    client.force_login(loner)
    assert client.get(URL).status_code == 200
    assert client.post(URL, {"language": "nl"}).status_code == 302
    assert agent_language(user=loner) == "nl"
