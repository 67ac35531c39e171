"""The widget in the visitor's language (issue 17): negotiation, the string table, plurals, the
conversation's language and the owner's texts and keywords in it."""

from __future__ import annotations

import gettext as gettext_module
import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import django
import pytest
from django.conf import settings
from django.test import Client
from django.utils import translation

from chatbots.languages import chatbot_text_variants_set
from chatbots.models import Chatbot
from conversations.models import Conversation
from handoff.transitions.timers import handoff_expire
from pivra.widget import operations
from pivra.widget.strings import PLURALS, STRINGS, plural_map, widget_strings
from tests.handoff_helpers import enable_handoff, event_kinds, new_visitor, request, say, wait_for_agents

ROOT = Path(__file__).resolve().parent.parent
WIDGET_JS = sorted((ROOT / "static" / "widget").rglob("*.js"))
LANGS = [code for code, _name in settings.LANGUAGES]


# --- plurals ---------------------------------------------------------------------------------------


def _cldr_category(lang: str, n: int) -> str:
    """CLDR's plural category of a whole number n (what Intl.PluralRules(lang).select(n) answers)."""
    if lang == "ar":
        if n == 0:
            return "zero"
        if n == 1:
            return "one"
        if n == 2:
            return "two"
        if 3 <= n % 100 <= 10:
            return "few"
        if 11 <= n % 100 <= 99:
            return "many"
        return "other"
    if lang in ("fr", "pt-br"):
        return "one" if n in (0, 1) else "many" if n and n % 1_000_000 == 0 else "other"
    if lang in ("es", "it"):
        return "one" if n == 1 else "many" if n and n % 1_000_000 == 0 else "other"
    return "one" if n == 1 else "other"


# The standard gettext Plural-Forms of each language (what its catalogue must declare).
STANDARD: dict[str, Callable[[int], int]] = {
    "en": lambda n: int(n != 1),
    "de": lambda n: int(n != 1),
    "nl": lambda n: int(n != 1),
    "es": lambda n: 0 if n == 1 else 1 if n != 0 and n % 1_000_000 == 0 else 2,
    "it": lambda n: int(n != 1),
    "fr": lambda n: int(n > 1),
    "pt-br": lambda n: int(n > 1),
    "ar": lambda n: (
        0 if n == 0 else 1 if n == 1 else 2 if n == 2 else 3 if 3 <= n % 100 <= 10 else 4 if 11 <= n % 100 <= 99 else 5
    ),
}


def _declared_plural(po: Path) -> Callable[[int], int] | None:
    if not po.exists():
        return None
    text = re.sub(r'"\s*\n\s*"', "", po.read_text(encoding="utf-8"))  # join continued strings
    found = re.search(r"Plural-Forms:\s*nplurals=\d+;\s*plural=(.*?);?\s*\\n", text)
    assert found, f"{po} declares no Plural-Forms"
    return gettext_module.c2py(found.group(1).strip())


def _project_po(lang: str) -> Path:
    return Path(settings.LOCALE_PATHS[0]) / translation.to_locale(lang) / "LC_MESSAGES" / "django.po"


def _django_po(lang: str) -> Path:
    return Path(django.__file__).parent / "conf" / "locale" / translation.to_locale(lang) / "LC_MESSAGES" / "django.po"


def test_every_language_has_a_standard_formula() -> None:
    assert sorted(STANDARD) == sorted(LANGS)


NUMBERS = [*range(201), 1_000_000]


@pytest.mark.parametrize("lang", LANGS)
def test_the_plural_map_agrees_with_the_catalogues(lang: str) -> None:
    """Intl.PluralRules' category -> form index must pick the form gettext would, for n = 0..200 (and a
    million): against the standard formula always; against the Plural-Forms of Django's own catalogue
    (which makemessages copies into a new one) and of Pivra's catalogue as soon as it ships (the
    translators' catalogues arrive later); and, for each plural message a catalogue translates, the
    form the widget gets equals gettext's for every n."""
    mapping = plural_map(lang)
    formulas = {"standard": STANDARD[lang]}
    for name, po in (("django", _django_po(lang)), ("pivra", _project_po(lang))):
        declared = _declared_plural(po)
        if declared is not None:
            formulas[name] = declared
    if lang != "en":
        assert "django" in formulas, lang  # never vacuous: Django ships every one of our languages
    for n in NUMBERS:
        category = _cldr_category(lang, n)
        expected = mapping.get(category, mapping["other"])
        for name, formula in formulas.items():
            assert int(formula(n)) == expected, (lang, name, n, category)
    strings = widget_strings(lang)
    with translation.override(lang):
        for key, (singular, plural) in PLURALS.items():
            if (
                translation.ngettext(singular, plural, 1) == singular
                and translation.ngettext(singular, plural, 2) == plural
            ):
                continue  # not translated yet: English's own forms
            for n in NUMBERS[:201]:
                form = strings[key][mapping.get(_cldr_category(lang, n), mapping["other"])]
                assert form == translation.ngettext(singular, plural, n), (lang, key, n)


@pytest.mark.parametrize("lang", LANGS)
def test_every_string_reaches_the_widget_with_every_plural_form(lang: str) -> None:
    strings = widget_strings(lang)
    assert set(strings) == set(STRINGS) | set(PLURALS)
    forms = max(plural_map(lang).values()) + 1
    for key in PLURALS:
        value = strings[key]
        assert isinstance(value, list) and len(value) == forms and all(value), (lang, key)
    for key in STRINGS:
        assert isinstance(strings[key], str) and strings[key], (lang, key)


def test_english_is_the_source_text() -> None:
    strings = widget_strings("en")
    assert strings["phoneThanks"] == "Thanks — we'll contact you at {phone}"
    assert strings["ratingStars"] == ["{n} star", "{n} stars"]


def test_placeholders_are_the_widgets_braces() -> None:
    for key, msgid in [*STRINGS.items(), *((k, s) for k, pair in PLURALS.items() for s in pair)]:
        assert "%(" not in msgid and "%s" not in msgid, key


# --- the JavaScript holds keys, not words ---------------------------------------------------------


def _js() -> dict[Path, str]:
    return {path: path.read_text(encoding="utf-8") for path in WIDGET_JS}


def test_every_key_the_widget_uses_is_in_the_table_and_back() -> None:
    used: set[str] = set()
    plural_used: set[str] = set()
    for text in _js().values():
        used |= set(re.findall(r"(?<![\w.])T\.(\w+)", text))
        used |= set(re.findall(r"(?<![\w.])t\(\s*\"(\w+)\"", text))
        plural_used |= set(re.findall(r"(?<![\w.])tn\(\s*\"(\w+)\"", text))
    table = set(STRINGS) | set(PLURALS)
    assert used | plural_used <= table, sorted((used | plural_used) - table)
    assert table <= used | plural_used, sorted(table - used - plural_used)
    assert plural_used <= set(PLURALS), sorted(plural_used - set(PLURALS))


# Visible text set from a literal: el(tag, class, "text"), .textContent/.title/.placeholder = "text",
# setAttribute("aria-label" | "title" | "placeholder" | "alt", "text"), showNotice("text").
LITERAL_SINKS = [
    re.compile(r"""\bel\(\s*["'`][^"'`]*["'`]\s*,\s*["'`][^"'`]*["'`]\s*,\s*(["'`])((?:(?!\1).)*)\1"""),
    re.compile(r"""\.(?:textContent|innerText|title|placeholder|alt|label)\s*=\s*(["'`])((?:(?!\1).)*)\1"""),
    re.compile(
        r"""setAttribute\(\s*["'](?:aria-label|title|placeholder|alt|aria-description)["']\s*,\s*(["'`])((?:(?!\1).)*)\1"""
    ),
    re.compile(r"""\b(?:showNotice|showPhoneError|systemLine)\(\s*(["'`])((?:(?!\1).)*)\1"""),
]
# Not words: the PDF badge, the close cross, the launcher's badge count.
NOT_WORDS = {"PDF", "\u00d7", "9+"}


def test_no_visitor_facing_english_is_left_in_the_widget_javascript() -> None:
    found = []
    for path, text in _js().items():
        for sink in LITERAL_SINKS:
            for match in sink.finditer(text):
                literal = match.group(2)
                words = re.sub(r"\$\{[^}]*\}", "", literal)
                if re.search(r"[A-Za-z]{2,}", words) and literal not in NOT_WORDS:
                    found.append(f"{path.relative_to(ROOT)}: {match.group(0)}")
    assert not found, found


def test_the_scan_catches_a_literal() -> None:
    sample = 'el("p", "pv-x", "Hello there"); node.title = "Close"; b.setAttribute("aria-label", `Open ${x}`);'
    hits = [m.group(2) for sink in LITERAL_SINKS for m in sink.finditer(sample)]
    assert hits == ["Hello there", "Close", "Open ${x}"]


# --- the frame -------------------------------------------------------------------------------------


def _frame(client: Client, bot: Chatbot, **extra: Any) -> tuple[Any, dict[str, Any]]:
    params = {"origin": "http://testserver"}
    if "langs" in extra:
        params["langs"] = extra.pop("langs")
    response = client.get(f"/widget/frame/{bot.public_key}/", params, **extra)
    assert response.status_code == 200
    body = response.content.decode()
    found = re.search(r'<script id="pivra-config" type="application/json">(.*?)</script>', body, re.S)
    assert found
    return response, json.loads(found.group(1))


@pytest.mark.django_db
def test_negotiation_fixed_then_browser_then_accept_language_then_default(client: Client, bot: Chatbot) -> None:
    _r, config = _frame(client, bot)
    assert (config["lang"], config["dir"]) == ("en", "ltr")  # no hint: the chatbot's default
    _r, config = _frame(client, bot, HTTP_ACCEPT_LANGUAGE="de-DE,de;q=0.9")
    assert config["lang"] == "de"
    _r, config = _frame(client, bot, langs="xx,fr-FR,en", HTTP_ACCEPT_LANGUAGE="de-DE")
    assert config["lang"] == "fr"  # navigator.languages before Accept-Language
    response, config = _frame(client, bot, langs="ar")
    assert (config["lang"], config["dir"]) == ("ar", "rtl")
    assert '<html lang="ar" dir="rtl">' in response.content.decode()
    assert config["plural"] == {"zero": 0, "one": 1, "two": 2, "few": 3, "many": 4, "other": 5}
    assert len(config["strings"]["ratingStars"]) == 6
    Chatbot.objects.filter(pk=bot.pk).update(language="nl")
    _r, config = _frame(client, bot, langs="fr-FR", HTTP_ACCEPT_LANGUAGE="de")
    assert config["lang"] == "nl"  # the owner's fixed language wins
    Chatbot.objects.filter(pk=bot.pk).update(language="", default_language="es")
    _r, config = _frame(client, bot, langs="ja,zh", HTTP_ACCEPT_LANGUAGE="ko")
    assert config["lang"] == "es"


@pytest.mark.django_db
def test_the_frame_varies_by_language_and_bounds_the_langs_parameter(client: Client, bot: Chatbot) -> None:
    response, config = _frame(client, bot, langs=",".join(["xx"] * 100) + ",fr")
    assert config["lang"] == "en"  # an oversized list is ignored, not parsed
    assert "Accept-Language" in response["Vary"]
    assert response["Cache-Control"] == "no-store"
    response, config = _frame(client, bot)
    assert '<html lang="en" dir="ltr">' in response.content.decode()
    assert config["strings"]["startNew"] == "Start new conversation"


@pytest.mark.django_db
def test_the_greeting_variant_is_shown_in_its_language_only(client: Client, bot: Chatbot) -> None:
    chatbot_text_variants_set(chatbot=bot, language="fr", texts={"greeting": "Bonjour ! Une question ?"}, keywords=[])
    _r, config = _frame(client, bot, langs="fr-FR")
    assert config["greeting"] == "Bonjour ! Une question ?"
    _r, config = _frame(client, bot, langs="de-DE")
    assert config["greeting"] == Chatbot.objects.get(pk=bot.pk).greeting or config["greeting"]
    _r, config = _frame(client, bot, langs="en-US")
    assert config["greeting"] == Chatbot.objects.get(pk=bot.pk).greeting


# --- the conversation's language -------------------------------------------------------------------


def _session(client: Client, bot: Chatbot, **body: Any) -> dict[str, Any]:
    response = client.post(
        "/api/widget/session", json.dumps({"public_key": bot.public_key, **body}), content_type="application/json"
    )
    assert response.status_code == 200, response.content
    return dict(response.json())


@pytest.mark.django_db
def test_the_session_holds_the_conversation_in_the_widgets_language(client: Client, bot: Chatbot) -> None:
    session = _session(client, bot, language="fr", locale="fr-FR")
    conversation = Conversation.objects.get(public_id=session["state"]["conversation"])
    assert conversation.language == "fr"
    # "Start new conversation" keeps it.
    visitor = conversation.visitor
    fresh = operations.widget_new_conversation(visitor=visitor, client_id="new-1")
    assert Conversation.objects.get(public_id=fresh["state"]["conversation"]).language == "fr"
    # A language Pivra does not speak: the chatbot's default.
    other = _session(Client(), bot, language="xx")
    assert Conversation.objects.get(public_id=other["state"]["conversation"]).language == "en"


@pytest.mark.django_db
def test_waiting_and_busy_texts_follow_the_conversations_language(bot: Chatbot) -> None:
    wait_for_agents(enable_handoff(bot))
    chatbot_text_variants_set(
        chatbot=bot,
        language="fr",
        texts={"waiting": "Un instant, on arrive.", "busy": "Tout le monde est occupé."},
        keywords=[],
    )
    bot.refresh_from_db()
    visitor, conversation = new_visitor(bot, locale="fr-FR")
    Conversation.objects.filter(pk=conversation.pk).update(language="fr")
    conversation.refresh_from_db()
    handoff = request(visitor, conversation)
    event = conversation.events.get(kind="handoff.requested")
    assert event.text == "Un instant, on arrive."
    from handoff.state import conversation_state

    assert conversation_state(conversation)["handoff"]["waiting_message"] == "Un instant, on arrive."
    assert handoff_expire(handoff_id=handoff.pk, now=handoff.deadline_at)
    assert conversation.events.get(kind="handoff.timed_out").text == "Tout le monde est occupé."
    state = conversation_state(conversation)["handoff"]
    assert state["busy_message"] == "Tout le monde est occupé."
    assert state["offline_message"] == bot.handoff_offline_message or state["offline_message"]
    # An English visitor of the same chatbot gets the default texts.
    visitor_en, conversation_en = new_visitor(bot)
    request(visitor_en, conversation_en)
    assert conversation_en.events.get(kind="handoff.requested").text == bot.handoff_waiting_message


@pytest.mark.django_db
def test_keywords_of_the_conversations_language_offer_a_person(bot: Chatbot) -> None:
    enable_handoff(bot, keywords=["speak to someone"])
    chatbot_text_variants_set(chatbot=bot, language="fr", texts={}, keywords=["parler à quelqu'un"])
    bot.refresh_from_db()
    visitor, conversation = new_visitor(bot, locale="fr-FR")
    Conversation.objects.filter(pk=conversation.pk).update(language="fr")
    conversation.refresh_from_db()
    say(visitor, conversation, "Je voudrais parler à quelqu'un svp")
    assert "handoff.offer" in event_kinds(conversation)
    visitor_en, conversation_en = new_visitor(bot)
    say(visitor_en, conversation_en, "Je voudrais parler à quelqu'un svp")
    assert "handoff.offer" not in event_kinds(conversation_en)  # not an English conversation's keyword
    say(visitor, conversation, "can I speak to someone")  # the default keywords still count
    assert event_kinds(conversation).count("handoff.offer") == 2


@pytest.mark.django_db
def test_refusal_details_are_worded_in_the_conversations_language(bot: Chatbot, monkeypatch) -> None:
    """The phone form's errors are produced while the conversation's language is active."""
    wait_for_agents(enable_handoff(bot))
    visitor, conversation = new_visitor(bot, locale="fr-FR")
    Conversation.objects.filter(pk=conversation.pk).update(language="fr")
    request(visitor, conversation)
    seen: list[str] = []
    from handoff.transitions import lead as lead_module

    real = lead_module.parse_phone

    def spy(**kwargs: Any) -> str:
        seen.append(translation.get_language())
        return real(**kwargs)

    monkeypatch.setattr(lead_module, "parse_phone", spy)
    with pytest.raises(Exception) as refused:
        operations.widget_lead(visitor=visitor, client_id=None, phone="12", locale="fr-FR")
    assert getattr(refused.value, "code", "") == "invalid_phone"
    assert seen == ["fr"]
    assert operations.visitor_language(visitor=visitor) == "fr"
