"""The shipped catalogues (locale/<lang>/LC_MESSAGES/{django,djangojs}.po and their committed .mo) are complete.

makemessages runs once, for every language and both domains, in a temporary copy of the sources (the checkout
is never touched); each committed catalogue must then hold exactly the messages it extracted. A missing
catalogue fails, it is not skipped. The checks themselves are pivra/message_checks.py, which
``python -m pivra.messages --check`` runs too. To fix a failure: ``make messages``, translate, ``make messages``.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from pivra import message_checks as checks
from pivra.messages import DOMAINS, PLURAL_FORMS, extract_into_copy, locales

COMMITTED = Path(settings.BASE_DIR) / "locale"
CATALOGUES = [(locale, domain) for locale in locales() for domain in DOMAINS]
IDS = [f"{locale}-{domain}" for locale, domain in CATALOGUES]


def _report(problems: list[str]) -> str:
    shown = problems[:60]
    more = f"\n… and {len(problems) - len(shown)} more" if len(problems) > len(shown) else ""
    return f"{len(problems)} problem(s):\n" + "\n".join(shown) + more


@pytest.fixture(scope="module")
def extracted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The locale directory makemessages writes in a copy of today's sources."""
    return extract_into_copy(tmp_path_factory.mktemp("messages") / "src")


def test_every_language_has_a_plural_rule() -> None:
    assert sorted(PLURAL_FORMS) == sorted(locales())


@pytest.mark.parametrize(("locale", "domain"), CATALOGUES, ids=IDS)
def test_catalogue_has_exactly_the_extracted_messages(extracted: Path, locale: str, domain: str) -> None:
    problems = checks.completeness_problems(committed=COMMITTED, extracted=extracted, locale=locale, domain=domain)
    assert not problems, _report(problems)


@pytest.mark.parametrize(("locale", "domain"), CATALOGUES, ids=IDS)
def test_catalogue_is_translated_and_not_fuzzy(locale: str, domain: str) -> None:
    problems = checks.translation_problems(checks.catalogue_path(COMMITTED, locale, domain))
    assert not problems, _report(problems)


@pytest.mark.parametrize(("locale", "domain"), CATALOGUES, ids=IDS)
def test_translations_keep_the_placeholders(locale: str, domain: str) -> None:
    problems = checks.placeholder_problems(checks.catalogue_path(COMMITTED, locale, domain))
    assert not problems, _report(problems)


@pytest.mark.parametrize(("locale", "domain"), CATALOGUES, ids=IDS)
def test_plural_forms_header(locale: str, domain: str) -> None:
    problems = checks.plural_forms_problems(checks.catalogue_path(COMMITTED, locale, domain), locale)
    assert not problems, _report(problems)


@pytest.mark.parametrize(("locale", "domain"), CATALOGUES, ids=IDS)
def test_committed_mo_is_compiled_from_the_po(locale: str, domain: str) -> None:
    problems = checks.compiled_problems(checks.catalogue_path(COMMITTED, locale, domain))
    assert not problems, _report(problems)


def test_arabic_has_six_plural_forms() -> None:
    assert PLURAL_FORMS["ar"].startswith("nplurals=6;")


# The checks' own behaviour, on small hand-written catalogues (these pass whatever the shipped ones say).

SAMPLE_HEADER = 'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n"Plural-Forms: {forms}\\n"\n\n'


def _po(tmp_path: Path, body: str, forms: str = "nplurals=2; plural=(n > 1);") -> Path:
    path = tmp_path / "django.po"
    path.write_text(SAMPLE_HEADER.format(forms=forms) + body, encoding="utf-8")
    return path


def test_parser_reads_context_plural_flags_and_continuations(tmp_path: Path) -> None:
    path = _po(
        tmp_path,
        '#: a.py\n#, fuzzy, python-format\nmsgctxt "verb"\nmsgid ""\n"Open %(n)s"\nmsgstr "Ouvrir %(n)s"\n\n'
        'msgid "One chat"\nmsgid_plural "%(n)d chats"\nmsgstr[0] "Une discussion"\nmsgstr[1] ""\n"%(n)d discussions"\n',
    )
    first, second = checks.messages(checks.parse_po(path))
    assert first.key == ("verb", "Open %(n)s", None) and first.flags == {"fuzzy", "python-format"}
    assert second.msgstr == ["Une discussion", "%(n)d discussions"]
    assert checks.header_fields(checks.parse_po(path))["Plural-Forms"] == "nplurals=2; plural=(n > 1);"


def test_checks_find_fuzzy_untranslated_and_placeholder_mistakes(tmp_path: Path) -> None:
    path = _po(
        tmp_path,
        '#, fuzzy\nmsgid "Hello"\nmsgstr "Bonjour"\n\nmsgid "Bye"\nmsgstr ""\n\n'
        '#, python-format\nmsgid "Assigned to %(name)s"\nmsgstr "Attribuée à %(nom)s"\n\n'
        '#, python-format\nmsgid "%s of %d"\nmsgstr "%d sur %s"\n\n'
        'msgid "Hi {name}"\nmsgstr "Salut"\n\n'
        '#, python-format\nmsgid "One chat"\nmsgid_plural "%(n)d chats"\nmsgstr[0] "Une discussion"\n'
        'msgstr[1] "%(n)d discussions"\n\n'
        'msgid "80% of chats"\nmsgstr "80 % des discussions"\n',
    )
    assert [p.split(": ", 1)[1] for p in checks.translation_problems(path)] == ["fuzzy 'Hello'", "untranslated 'Bye'"]
    placeholder_problems = checks.placeholder_problems(path)
    assert len(placeholder_problems) == 3, placeholder_problems
    assert "Assigned to" in placeholder_problems[0] and "%s of %d" in placeholder_problems[1]
    assert "Hi {name}" in placeholder_problems[2]


def test_plural_forms_compared_as_rules(tmp_path: Path) -> None:
    assert not checks.plural_forms_problems(_po(tmp_path, "", "nplurals=2; plural=n>1;"), "fr")
    assert checks.plural_forms_problems(_po(tmp_path, "", "nplurals=2; plural=(n != 1);"), "fr")
    assert checks.plural_forms_problems(_po(tmp_path, "", "nplurals=2; plural=(n != 1);"), "ar")
