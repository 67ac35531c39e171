"""The transcript email is written in the conversation's language (it goes to the visitor, also when an
agent sends it): subject, text and HTML parts, ``<html lang dir>`` and a Content-Language header. The
French wording is checked through a temporary catalogue compiled into pytest's tmp_path (the shipped
catalogues are not needed, and nothing is written under locale/)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest
from django.test import override_settings

from chatbots.models import Chatbot
from conversations import transcript_send
from conversations.models import Conversation
from tests.factories import Personas
from tests.test_actions_support import escalate

pytestmark = pytest.mark.django_db

FRENCH_PO = r"""msgid ""
msgstr ""
"Content-Type: text/plain; charset=UTF-8\n"
"Language: fr\n"
"Plural-Forms: nplurals=2; plural=(n > 1);\n"

msgid "Your conversation with %(chatbot)s"
msgstr "Votre conversation avec %(chatbot)s"

msgid "No messages in this conversation."
msgstr "Aucun message dans cette conversation."
"""


def _conversation(personas: Personas, *, language: str, default_language: str = "en") -> Conversation:
    Chatbot.objects.filter(pk=personas.chatbot.pk).update(default_language=default_language)
    conversation = escalate(personas.chatbot).conversation
    Conversation.objects.filter(pk=conversation.pk).update(language=language)
    return Conversation.objects.select_related("chatbot").get(pk=conversation.pk)


def _html(message: object) -> str:
    return str(message.alternatives[0][0])  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("language", "default_language", "expected", "direction"),
    [
        ("fr", "en", "fr", "ltr"),
        ("ar", "en", "ar", "rtl"),
        ("", "de", "de", "ltr"),  # no language noted: the chatbot's default
        ("xx", "pt-br", "pt-br", "ltr"),  # an unknown code: the chatbot's default
    ],
)
def test_the_email_is_marked_with_the_conversations_language(
    personas: Personas, language: str, default_language: str, expected: str, direction: str
) -> None:
    conversation = _conversation(personas, language=language, default_language=default_language)
    message = transcript_send.transcript_email(conversation=conversation, to="visitor@example.com")

    assert message.extra_headers["Content-Language"] == expected
    assert f'<html lang="{expected}" dir="{direction}">' in _html(message)


def test_an_english_conversation_stays_english(personas: Personas) -> None:
    message = transcript_send.transcript_email(
        conversation=_conversation(personas, language="en"), to="visitor@example.com"
    )
    assert message.subject.startswith("Your conversation with ")
    assert "Your conversation with" in message.body


@pytest.mark.skipif(shutil.which("msgfmt") is None, reason="gettext's msgfmt is not installed")
def test_a_french_conversation_gets_a_french_email(personas: Personas, tmp_path: Path) -> None:
    messages = tmp_path / "fr" / "LC_MESSAGES"
    messages.mkdir(parents=True)
    (messages / "django.po").write_text(FRENCH_PO, encoding="utf-8")
    subprocess.run(["msgfmt", "-o", str(messages / "django.mo"), str(messages / "django.po")], check=True)
    conversation = _conversation(personas, language="fr")
    name = conversation.chatbot.name

    # LOCALE_PATHS changing resets Django's loaded catalogues (and again when the override ends).
    with override_settings(LOCALE_PATHS=[tmp_path]):
        message = transcript_send.transcript_email(conversation=conversation, to="visitor@example.com")
        english = transcript_send.transcript_email(
            conversation=_conversation(personas, language="en"), to="visitor@example.com"
        )

    assert f"Votre conversation avec {name}" in message.body
    assert f"Votre conversation avec {name}" in _html(message)
    assert english.subject == f"Your conversation with {name}"
    assert "Votre conversation" not in english.body
    # The subject shares its msgid with the heading (conversations/transcript.py).
    assert message.subject == f"Votre conversation avec {name}"
