"""Pure parsing with no database: trigger keywords and phone numbers."""

from __future__ import annotations

from typing import Any

import pytest

from handoff.keywords import matching_keyword, normalize_phrase
from handoff.transitions.lead import parse_phone
from pivra.errors import DomainError

pytestmark = pytest.mark.django_db


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Can I speak to someone?", "speak to someone"),
        ("SPEAK TO SOMEONE!!!", "speak to someone"),
        ("speak   to\tsomeone", "speak to someone"),
        ("Je veux parler à quelqu'un", "parler a quelqu un"),
        ("speak to someones", None),
        ("I can't speak. To someone else", "speak to someone"),
        # Spacing is ignored, not just collapsed: words may be run together or split.
        ("speakto someone", "speak to someone"),
        ("speak to some one", "speak to someone"),
        ("Speak-to-some-one!", "speak to someone"),
        ("SPEAKTOSOMEONE", "speak to someone"),
        # …but a match starts and ends on word boundaries.
        ("unspeak to someone", None),
        ("speak to someonewhere", None),
        ("Je veux PARLER A QUELQU UN", "parler a quelqu un"),
        ("parler à quelqu\u2019un", "parler a quelqu un"),
    ],
)
def test_keywords_match_whatever_the_case_accents_punctuation_and_spacing(text: str, expected: str | None) -> None:
    keywords = ["Speak to someone", "parler à quelqu'un"]
    found = matching_keyword(text=text, keywords=keywords)
    assert (normalize_phrase(text=found) if found else None) == expected


@pytest.mark.parametrize(
    ("raw", "locale", "expected"),
    [
        ("06 12 34 56 78", "fr-FR", "+33612345678"),
        ("+44 7911 123456", "", "+447911123456"),
        ("07911 123456", "en-GB", "+447911123456"),
        ("(415) 555-2671", "en-US", "+14155552671"),  # FIXED_LINE_OR_MOBILE: the US plan can't tell
        ("+33 6 12 34 56 78", "en-GB", "+33612345678"),
    ],
)
def test_phone_numbers_are_parsed_to_e164(raw: str, locale: str, expected: str) -> None:
    assert parse_phone(raw=raw, locale=locale) == expected


@pytest.mark.parametrize(("raw", "locale"), [("", "en-GB"), ("hello", "en-GB"), ("123", "fr-FR"), ("07911 123456", "")])
def test_bad_phone_numbers_get_a_clear_error(raw: str, locale: str) -> None:
    with pytest.raises(DomainError) as error:
        parse_phone(raw=raw, locale=locale)
    assert error.value.code == "invalid_phone"


@pytest.mark.parametrize(
    ("text", "keyword"),
    [
        ("Søren here, I want to speak to Bjørn", "Bjorn"),
        ("Ask Łukasz", "lukasz"),
        ("Encyclopædia", "encyclopaedia"),
        ("Mon cœur", "coeur"),
        ("Đorđe please", "dorde"),
        ("Þór", "thor"),
        ("I need a HUMAN", "human"),
        ("我想找人工客服谢谢", "人工客服"),
    ],
)
def test_keywords_fold_letters_that_do_not_decompose(text: str, keyword: str) -> None:
    assert matching_keyword(text=text, keywords=[keyword]) == keyword


@pytest.mark.parametrize("text", ["That was inhumane", "humans only", "superhuman", "a humanoid"])
def test_a_keyword_never_matches_inside_or_across_part_of_a_word(text: str) -> None:
    assert matching_keyword(text=text, keywords=["human"]) is None


def test_the_first_matching_keyword_is_returned_and_empty_keywords_never_match() -> None:
    assert matching_keyword(text="!!!", keywords=["", "?!"]) is None
    assert matching_keyword(text="talk to real person now", keywords=["human", "real person", "talk to"]) == (
        "real person"
    )


def test_a_uk_landline_is_refused_with_a_clear_error() -> None:
    with pytest.raises(DomainError) as error:
        parse_phone(raw="020 7946 0018", locale="en-GB")
    # invalid_phone is what the widget shows inline under the mobile number field.
    assert error.value.code == "invalid_phone"
    assert error.value.detail == "That looks like a landline. Please enter a mobile number."


@pytest.mark.parametrize(
    ("helper", "args"),
    [
        (parse_phone, ("07911 123456",)),
        (matching_keyword, ("speak to someone", ["speak to someone"])),
        (normalize_phrase, ("Speak!",)),
    ],
)
def test_public_helpers_take_keyword_arguments_only(helper: Any, args: tuple[Any, ...]) -> None:
    with pytest.raises(TypeError):
        helper(*args)
