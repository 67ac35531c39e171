"""The transcript's text and its delivery: forged speaker lines, the size bound, invisible
characters in the subject, permanent SMTP failures, and a redelivery while the first send runs."""

from __future__ import annotations

import smtplib
from typing import Any

import pytest
from django.core.cache import cache

from conversations import tasks, transcript, transcript_send
from conversations.models import Event
from conversations.transcript import transcript_render
from conversations.transcript_smtp import smtp_transient
from tests.factories import Personas
from tests.handoff_helpers import say
from tests.test_transcript import _append, chat

pytestmark = pytest.mark.django_db


def test_a_visitor_cannot_forge_another_speakers_line_in_the_text_part(personas: Personas) -> None:
    conversation = chat(personas, resolve=False)
    say(conversation.visitor, conversation, "hi\n[10:00] Alice: Refund approved, send your card number")
    _, text, _ = transcript_render(conversation=conversation)
    assert "\n    [10:00] Alice: Refund approved" in text
    assert not any(line.startswith("[10:00] Alice:") for line in text.splitlines())


def test_a_long_conversation_keeps_its_last_lines_and_says_so(
    personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    conversation = chat(personas)
    for i in range(6):
        _append(conversation, kind="message", author=Event.Author.AI, text=f"line {i}")
    monkeypatch.setattr(transcript, "MAX_LINES", 3)
    _, text, html = transcript_render(conversation=conversation)
    assert "[Earlier messages omitted]" in text and "Earlier messages omitted" in html
    assert "line 3" in text and "line 5" in text and "line 2" not in text
    assert text.index("line 3") < text.index("line 5")
    monkeypatch.setattr(transcript, "MAX_LINES", 500)
    monkeypatch.setattr(transcript, "MAX_CHARS", 450)
    _, text, _ = transcript_render(conversation=conversation)
    assert "Earlier messages omitted" in text and "line 5" in text and "line 0" not in text


def test_invisible_and_bidi_characters_leave_the_subject(personas: Personas) -> None:
    personas.chatbot.name = "Acme\u202egnp.exe\u200b\u2066\ufeff"
    personas.chatbot.save()
    subject, _, _ = transcript_render(conversation=chat(personas))
    assert subject == "Your conversation with Acme gnp.exe"


@pytest.mark.parametrize(
    ("exc", "transient"),
    [
        (smtplib.SMTPRecipientsRefused({"v@example.com": (550, b"no such user")}), False),
        (smtplib.SMTPDataError(554, b"rejected"), False),
        (smtplib.SMTPAuthenticationError(535, b"bad login"), False),
        (smtplib.SMTPSenderRefused(553, b"no", "from@example.com"), False),
        (smtplib.SMTPDataError(451, b"try later"), True),
        (smtplib.SMTPServerDisconnected("gone"), True),
        (smtplib.SMTPConnectError(421, b"busy"), True),
        (ConnectionRefusedError(), True),
    ],
)
def test_permanent_smtp_failures_are_not_retried(
    monkeypatch: pytest.MonkeyPatch, exc: Exception, transient: bool, caplog: Any
) -> None:
    calls: list[int] = []

    def deliver(**_: Any) -> bool:
        calls.append(1)
        raise exc

    monkeypatch.setattr(tasks, "transcript_deliver", deliver)
    assert smtp_transient(exc) is transient
    result = tasks.send_transcript.apply(args=(1, "v@example.com", "req-1"))
    if transient:
        assert len(calls) == (tasks.send_transcript.max_retries or 0) + 1 and result.failed()
    else:
        assert len(calls) == 1 and result.get() is False
        assert "v@example.com" not in caplog.text  # the code only


def test_a_redelivery_while_the_first_send_runs_retries_later_and_sent_is_marked_after(
    personas: Personas, settings: Any
) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    conversation = chat(personas)
    cache.set("transcript:sending:r9", 1, timeout=60)
    with pytest.raises(transcript_send.StillSending):
        transcript_send.transcript_deliver(conversation_id=conversation.pk, email="v@example.com", request_id="r9")
    assert cache.get("transcript:sent:r9") is None
    cache.delete("transcript:sending:r9")
    assert transcript_send.transcript_deliver(conversation_id=conversation.pk, email="v@example.com", request_id="r9")
    assert cache.get("transcript:sent:r9") and cache.get("transcript:sending:r9") is None
