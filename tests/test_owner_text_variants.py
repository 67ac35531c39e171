"""Issue 17: the owner's texts per language on Chatbot → Settings (Language section and "Texts in other
languages"), the chatbot_update_languages service and the variants' fallback."""

from __future__ import annotations

import pytest
from django.test import Client
from django.utils import translation

from chatbots.forms import TextVariantsForm
from chatbots.languages import chatbot_text_variants_set, handoff_keywords_for, owner_text
from chatbots.services import MAX_KEYWORD_LENGTH, MAX_KEYWORDS, chatbot_update_languages
from pivra.errors import DomainError
from tests.factories import Personas

pytestmark = pytest.mark.django_db

URL = "/dashboard/settings/"


def _variants(bot_pk: int, language: str = "fr", **fields: str) -> dict[str, str]:
    form = {"section": "variants", "chatbot": str(bot_pk), "variant": language}
    form.update(dict.fromkeys(("greeting", "waiting", "busy", "offline", "keywords"), ""))
    form.update(fields)
    return {key if key in ("section", "chatbot", "variant") else f"texts-{key}": value for key, value in form.items()}


# --- the service ---------------------------------------------------------------------------------


def test_the_language_service_saves_a_fixed_and_a_default_language(personas: Personas) -> None:
    bot = chatbot_update_languages(chatbot=personas.chatbot, language="fr", default_language="de")
    bot.refresh_from_db()
    assert (bot.language, bot.default_language) == ("fr", "de")
    bot = chatbot_update_languages(chatbot=bot, language="", default_language="en")
    bot.refresh_from_db()
    assert (bot.language, bot.default_language) == ("", "en")


@pytest.mark.parametrize(
    ("language", "default"), [("xx", "en"), ("en", ""), ("fr", "klingon"), ("FR", "en"), ("en", "pt_BR")]
)
def test_the_language_service_refuses_unknown_codes(personas: Personas, language: str, default: str) -> None:
    with pytest.raises(DomainError) as refused:
        chatbot_update_languages(chatbot=personas.chatbot, language=language, default_language=default)
    assert refused.value.code == "invalid_language"
    personas.chatbot.refresh_from_db()
    assert (personas.chatbot.language, personas.chatbot.default_language) == ("", "en")


def test_an_empty_variant_text_falls_back_to_the_default(personas: Personas) -> None:
    bot = personas.chatbot
    chatbot_text_variants_set(chatbot=bot, language="fr", texts={"greeting": "Bonjour !", "busy": "  "}, keywords=[])
    bot.refresh_from_db()
    assert bot.text_variants == {"fr": {"greeting": "Bonjour !"}}
    assert owner_text(chatbot=bot, name="greeting", language="fr") == "Bonjour !"
    # No German variant: the default text, in Pivra's German while it is still the text Pivra ships.
    with translation.override("de"):
        assert owner_text(chatbot=bot, name="greeting", language="de") == translation.gettext(bot.greeting)
    assert owner_text(chatbot=bot, name="busy", language="fr") != ""


# --- the form ------------------------------------------------------------------------------------


def test_the_variant_form_shows_the_default_texts_as_placeholders(personas: Personas) -> None:
    bot = personas.chatbot
    form = TextVariantsForm.for_chatbot(bot, "fr")
    html = str(form["greeting"])
    assert f'placeholder="{bot.greeting}"' in html or "placeholder=" in html
    assert form.fields["greeting"].widget.attrs["placeholder"] == bot.greeting
    assert form.fields["waiting"].widget.attrs["placeholder"] == bot.handoff_waiting_message
    assert str(form.fields["offline"].help_text) == "Empty: the default text is used."


def test_the_variant_form_splits_keywords_and_refuses_overlong_texts(personas: Personas) -> None:
    form = TextVariantsForm.for_chatbot(
        personas.chatbot,
        "fr",
        data={"texts-greeting": "x" * 501, "texts-keywords": "parler à quelqu'un\n\n un humain ,conseiller"},
    )
    assert not form.is_valid()
    assert "greeting" in form.errors
    form = TextVariantsForm.for_chatbot(
        personas.chatbot, "fr", data={"texts-keywords": "parler à quelqu'un\n un humain "}
    )
    assert form.is_valid()
    assert form.keyword_list() == ["parler à quelqu'un", "un humain"]


# --- the page ------------------------------------------------------------------------------------


def test_the_page_shows_the_language_section_and_the_variant_selector(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    page = client.get(URL).content.decode()
    for text in ("Language", "Follow the visitor&#x27;s browser", "Default language", "Texts in other languages"):
        assert text in page
    assert "Empty: the default text is used." in page
    assert 'name="variant"' in page and 'value="fr"' in page
    assert '<option value="en"' not in page.split('id="variant-select"')[1].split("</select>")[0]  # the default


def test_an_owner_saves_the_language_section(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    form = {"section": "languages", "chatbot": personas.chatbot.pk, "language": "fr", "default_language": "de"}
    response = client.post(URL, form)
    assert response.status_code == 302
    personas.chatbot.refresh_from_db()
    assert (personas.chatbot.language, personas.chatbot.default_language) == ("fr", "de")
    form = {"section": "languages", "chatbot": personas.chatbot.pk, "language": "", "default_language": "en"}
    assert client.post(URL, form).status_code == 302
    personas.chatbot.refresh_from_db()
    assert (personas.chatbot.language, personas.chatbot.default_language) == ("", "en")


@pytest.mark.parametrize("field", ["language", "default_language"])
def test_a_bad_language_code_is_a_readable_error_not_a_500(client: Client, personas: Personas, field: str) -> None:
    client.force_login(personas.owner)
    form = {"section": "languages", "chatbot": personas.chatbot.pk, "language": "", "default_language": "en"}
    form[field] = "<script>xx</script>"
    response = client.post(URL, form)
    assert response.status_code == 200
    assert "Choose one of the languages offered." in response.content.decode()
    personas.chatbot.refresh_from_db()
    assert (personas.chatbot.language, personas.chatbot.default_language) == ("", "en")


def test_an_owner_saves_a_french_variant_and_the_page_shows_it(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    bot = personas.chatbot
    response = client.post(
        URL, _variants(bot.pk, greeting="Bonjour ! Comment puis-je aider ?", keywords="parler à quelqu'un\nun humain")
    )
    assert response.status_code == 302 and "variant=fr" in response["Location"]
    bot.refresh_from_db()
    assert bot.text_variants == {
        "fr": {"greeting": "Bonjour ! Comment puis-je aider ?", "keywords": ["parler à quelqu'un", "un humain"]}
    }
    assert handoff_keywords_for(chatbot=bot, language="fr")[:2] == ["parler à quelqu'un", "un humain"]
    page = client.get(URL, {"chatbot": str(bot.pk), "variant": "fr"}).content.decode()
    assert "Bonjour ! Comment puis-je aider ?" in page
    assert 'data-has-variant="fr"' in page
    assert 'data-has-variant="de"' not in page
    # Emptied again: the variant is removed and the default texts are used.
    assert client.post(URL, _variants(bot.pk)).status_code == 302
    bot.refresh_from_db()
    assert bot.text_variants == {}


def test_the_default_language_cannot_have_a_variant(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    response = client.post(URL, _variants(personas.chatbot.pk, language="en", greeting="Hello there"))
    assert response.status_code == 200
    assert "Choose a language other than the default one." in response.content.decode()
    personas.chatbot.refresh_from_db()
    assert personas.chatbot.text_variants == {}
    page = client.get(URL, {"chatbot": str(personas.chatbot.pk), "variant": "en"})
    assert page.status_code == 200
    assert "The default language uses the texts above" in page.content.decode()


@pytest.mark.parametrize("code", ["xx", "fr-FR", "", "%00", "a" * 500])
def test_a_bad_variant_code_is_a_readable_error_not_a_500(client: Client, personas: Personas, code: str) -> None:
    client.force_login(personas.owner)
    response = client.post(URL, _variants(personas.chatbot.pk, language=code, greeting="Hola"))
    assert response.status_code == 200
    assert "Choose a language other than the default one." in response.content.decode()
    personas.chatbot.refresh_from_db()
    assert personas.chatbot.text_variants == {}
    page = client.get(URL, {"chatbot": str(personas.chatbot.pk), "variant": code})
    assert page.status_code == 200


def test_variant_keywords_are_cleaned_and_limited_per_language(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    bot = personas.chatbot
    response = client.post(URL, _variants(bot.pk, language="de", keywords="Mensch\n  mensch \nmit   jemandem sprechen"))
    assert response.status_code == 302
    bot.refresh_from_db()
    assert bot.text_variants["de"]["keywords"] == ["Mensch", "mit jemandem sprechen"]
    too_long = "x" * (MAX_KEYWORD_LENGTH + 1)
    response = client.post(URL, _variants(bot.pk, language="es", keywords=too_long))
    assert response.status_code == 200
    assert f"Keep each trigger keyword under {MAX_KEYWORD_LENGTH} characters." in response.content.decode()
    too_many = "\n".join(f"palabra {n}" for n in range(MAX_KEYWORDS + 1))
    response = client.post(URL, _variants(bot.pk, language="es", keywords=too_many))
    assert response.status_code == 200
    assert f"Use at most {MAX_KEYWORDS} trigger keywords." in response.content.decode()
    bot.refresh_from_db()
    assert "es" not in bot.text_variants and bot.text_variants["de"]["keywords"] == ["Mensch", "mit jemandem sprechen"]


def test_an_overlong_variant_text_is_a_field_error(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    response = client.post(URL, _variants(personas.chatbot.pk, busy="b" * 501))
    assert response.status_code == 200
    assert "Ensure this value has at most 500 characters" in response.content.decode()


def test_agents_cannot_change_languages_or_variants(client: Client, personas: Personas) -> None:
    client.force_login(personas.teammate)
    bot = personas.chatbot
    page = client.get(URL).content.decode()
    assert "Texts in other languages" in page and "Save texts in" not in page
    client.post(URL, _variants(bot.pk, greeting="Bonjour"))
    client.post(URL, {"section": "languages", "chatbot": bot.pk, "language": "fr", "default_language": "de"})
    bot.refresh_from_db()
    assert bot.text_variants == {} and (bot.language, bot.default_language) == ("", "en")


def test_another_workspace_cannot_write_variants(client: Client, personas: Personas) -> None:
    client.force_login(personas.outsider)
    response = client.post(URL, _variants(personas.chatbot.pk, greeting="Bonjour"))
    assert response.status_code == 404
    personas.chatbot.refresh_from_db()
    assert personas.chatbot.text_variants == {}
