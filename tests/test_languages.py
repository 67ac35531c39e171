"""chatbots.languages: which language the widget speaks, and the owner's words in it (issue 17)."""

from __future__ import annotations

import pytest
from django.utils import translation

from chatbots.languages import (
    OWNER_TEXT_MAX,
    accept_language_codes,
    chatbot_text_variants_set,
    handoff_keywords_for,
    language_direction,
    owner_text,
    supported_language,
    widget_language,
)
from chatbots.models import DEFAULT_BUSY_MESSAGE, DEFAULT_GREETING, Chatbot
from pivra.errors import DomainError
from tests.factories import Personas


@pytest.mark.parametrize(
    ("code", "expected"),
    [
        ("fr", "fr"),
        ("fr-FR", "fr"),
        ("FR-ca", "fr"),
        ("de_AT", "de"),
        ("pt-BR", "pt-br"),
        ("pt", "pt-br"),
        ("pt_PT", "pt-br"),
        ("ar-EG", "ar"),
        ("en-US", "en"),
        ("nl-BE", "nl"),
        ("zz", None),
        ("zh-CN", None),
        ("*", None),
        ("", None),
        ("fr-" + "x" * 40, None),
        (None, None),
        (42, None),
    ],
)
def test_supported_language(code: object, expected: str | None) -> None:
    assert supported_language(code) == expected


def test_accept_language_codes_most_wanted_first_without_refused_ones() -> None:
    header = "de;q=0.5, fr-FR, nl;q=0, en;q=0.8, *;q=0.1"
    assert accept_language_codes(header) == ["fr-fr", "en", "de"]
    assert accept_language_codes("") == []
    assert accept_language_codes("fr," * 300) == []  # over-long headers are ignored, not parsed


@pytest.fixture
def chatbot(personas: Personas) -> Chatbot:
    bot = personas.chatbot
    bot.language = ""
    bot.default_language = "en"
    bot.handoff_keywords = ["human", "agent"]
    bot.text_variants = {}
    bot.save()
    return bot


def test_widget_language_browser_languages_first(chatbot: Chatbot) -> None:
    assert widget_language(chatbot=chatbot, browser_languages=["zz", "fr-FR", "de"], accept_language="de") == "fr"


def test_widget_language_accept_language_when_no_browser_language_matches(chatbot: Chatbot) -> None:
    assert widget_language(chatbot=chatbot, browser_languages=["zz-ZZ", 7], accept_language="ja, es;q=0.9") == "es"


def test_widget_language_default_language_last(chatbot: Chatbot) -> None:
    chatbot.default_language = "nl"
    assert widget_language(chatbot=chatbot, browser_languages=["ja"], accept_language="ko") == "nl"
    assert widget_language(chatbot=chatbot) == "nl"


def test_widget_language_fixed_language_wins(chatbot: Chatbot) -> None:
    chatbot.language = "ar"
    assert widget_language(chatbot=chatbot, browser_languages=["fr"], accept_language="de") == "ar"


def test_widget_language_ignores_an_unknown_fixed_or_default_language(chatbot: Chatbot) -> None:
    chatbot.language = "xx"
    chatbot.default_language = "yy"
    assert widget_language(chatbot=chatbot, browser_languages=["it-IT"]) == "it"
    assert widget_language(chatbot=chatbot) == "en"


def test_language_direction() -> None:
    assert language_direction("ar") == "rtl"
    assert [language_direction(code) for code in ("en", "fr", "pt-br")] == ["ltr", "ltr", "ltr"]


def test_owner_text_variant_for_its_language_only(chatbot: Chatbot) -> None:
    chatbot.greeting = "Welcome to Acme!"
    chatbot.text_variants = {"fr": {"greeting": "Bienvenue chez Acme !"}}
    assert owner_text(chatbot=chatbot, name="greeting", language="fr") == "Bienvenue chez Acme !"
    assert owner_text(chatbot=chatbot, name="greeting", language="de") == "Welcome to Acme!"
    assert owner_text(chatbot=chatbot, name="greeting", language="en") == "Welcome to Acme!"


def test_owner_text_empty_variant_falls_back_to_the_default(chatbot: Chatbot) -> None:
    chatbot.handoff_busy_message = "All hands busy."
    chatbot.text_variants = {"fr": {"busy": "   ", "greeting": "Salut"}, "de": "not a dict"}
    assert owner_text(chatbot=chatbot, name="busy", language="fr") == "All hands busy."
    assert owner_text(chatbot=chatbot, name="busy", language="de") == "All hands busy."


def test_owner_text_pivras_shipped_default_is_shown_translated(chatbot: Chatbot) -> None:
    chatbot.greeting = DEFAULT_GREETING
    chatbot.handoff_busy_message = DEFAULT_BUSY_MESSAGE
    assert owner_text(chatbot=chatbot, name="greeting", language="en") == DEFAULT_GREETING
    with translation.override("fr"):
        french = translation.gettext(DEFAULT_GREETING)
    assert owner_text(chatbot=chatbot, name="greeting", language="fr") == french
    # The caller's active language does not matter: the conversation's language does.
    with translation.override("de"):
        assert owner_text(chatbot=chatbot, name="busy", language="en") == DEFAULT_BUSY_MESSAGE


def test_owner_text_changed_default_is_the_owners_words(chatbot: Chatbot) -> None:
    chatbot.greeting = "Hi from Acme"
    assert owner_text(chatbot=chatbot, name="greeting", language="fr") == "Hi from Acme"


def test_handoff_keywords_for_language_plus_default_without_duplicates(chatbot: Chatbot) -> None:
    chatbot.text_variants = {"fr": {"keywords": ["humain", "agent", "conseiller"]}}
    assert handoff_keywords_for(chatbot=chatbot, language="fr") == ["humain", "agent", "conseiller", "human"]
    assert handoff_keywords_for(chatbot=chatbot, language="de") == ["human", "agent"]
    assert handoff_keywords_for(chatbot=chatbot, language="") == ["human", "agent"]


def test_handoff_keywords_for_the_default_language_ignores_a_variant(chatbot: Chatbot) -> None:
    chatbot.text_variants = {"en": {"keywords": ["stale"]}}
    assert handoff_keywords_for(chatbot=chatbot, language="en") == ["human", "agent"]


def test_text_variants_set_saves_one_language(chatbot: Chatbot) -> None:
    chatbot_text_variants_set(
        chatbot=chatbot,
        language="fr",
        texts={"greeting": "  Bonjour !  ", "waiting": "", "busy": "Équipe occupée"},
        keywords=["humain", " Humain ", "conseiller"],
    )
    chatbot.refresh_from_db()
    assert chatbot.text_variants == {
        "fr": {"greeting": "Bonjour !", "busy": "Équipe occupée", "keywords": ["humain", "conseiller"]}
    }


def test_text_variants_set_all_empty_removes_the_variant(chatbot: Chatbot) -> None:
    chatbot.text_variants = {"fr": {"greeting": "Bonjour"}, "de": {"greeting": "Hallo"}}
    chatbot.save()
    chatbot_text_variants_set(chatbot=chatbot, language="fr", texts={"greeting": " "}, keywords=[])
    chatbot.refresh_from_db()
    assert chatbot.text_variants == {"de": {"greeting": "Hallo"}}


@pytest.mark.parametrize("language", ["en", "xx", "", "pt"])
def test_text_variants_set_refuses_the_default_or_an_unknown_language(chatbot: Chatbot, language: str) -> None:
    with pytest.raises(DomainError) as refused:
        chatbot_text_variants_set(chatbot=chatbot, language=language, texts={"greeting": "Hi"}, keywords=[])
    assert refused.value.code == "invalid_language"
    chatbot.refresh_from_db()
    assert chatbot.text_variants == {}


def test_text_variants_set_refuses_a_text_too_long(chatbot: Chatbot) -> None:
    with pytest.raises(DomainError) as refused:
        chatbot_text_variants_set(
            chatbot=chatbot, language="fr", texts={"offline": "x" * (OWNER_TEXT_MAX + 1)}, keywords=[]
        )
    assert refused.value.code == "invalid_message"
    chatbot.refresh_from_db()
    assert chatbot.text_variants == {}
    chatbot_text_variants_set(chatbot=chatbot, language="fr", texts={"offline": "x" * OWNER_TEXT_MAX}, keywords=[])
    chatbot.refresh_from_db()
    assert chatbot.text_variants == {"fr": {"offline": "x" * OWNER_TEXT_MAX}}
