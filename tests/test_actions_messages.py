"""Email (through a real SMTP server on loopback) and Slack messages: visitor text is escaped."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from actions.deliveries import delivery_attempt
from actions.messages import slack_escape, slack_message, summarize
from actions.models import Action
from actions.services import action_create, action_send_test
from tests.factories import Personas
from tests.test_actions_support import Receiver, SmtpCollector, escalate_and_dispatch, running_smtp

HOSTILE_PAGE = "https://shop.example.com/?q=<script>alert(1)</script>&x=<!channel>"


@pytest.fixture(autouse=True)
def _allow_loopback(settings: Any) -> None:
    settings.WEBHOOK_ALLOW_PRIVATE = True


@pytest.fixture
def smtp_server(settings: Any) -> Iterator[SmtpCollector]:
    with running_smtp(settings) as collector:
        yield collector


def _part(message: Any, kind: str) -> str:
    part = message.get_body(preferencelist=(kind,))
    assert part is not None
    return str(part.get_content())


@pytest.mark.django_db
def test_an_email_action_sends_html_and_text_with_visitor_values_escaped(
    personas: Personas, smtp_server: SmtpCollector
) -> None:
    action_create(
        workspace=personas.workspace,
        chatbot=personas.chatbot,
        name="Team inbox",
        kind=Action.Kind.EMAIL,
        events=["conversation.escalated"],
        recipients=["support@example.com, sales@example.com"],
    )
    (delivery,) = escalate_and_dispatch(personas.chatbot, page=HOSTILE_PAGE)
    attempt = delivery_attempt(delivery_id=delivery.pk)
    assert attempt is not None and attempt.outcome == "succeeded", attempt and attempt.error
    (envelope,) = smtp_server.envelopes
    assert sorted(envelope.rcpt_tos) == ["sales@example.com", "support@example.com"]
    (message,) = smtp_server.messages
    assert message["Subject"] == "[Acme bot] New handoff request"
    html = _part(message, "html")
    text = _part(message, "plain")
    assert "<script>" not in html and "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "&lt;!channel&gt;" in html
    conversation_url = delivery.payload["data"]["conversation"]["url"]
    assert f'href="{conversation_url}"' in html
    assert "Open conversation" in html
    assert conversation_url in text
    assert "“Talk to a human” button" in text


@pytest.mark.django_db
def test_an_unreachable_mail_server_is_a_failed_attempt_retried_later(personas: Personas, settings: Any) -> None:
    from pivra.stack import free_port

    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", free_port()
    settings.EMAIL_USE_TLS = settings.EMAIL_USE_SSL = False
    action_create(
        workspace=personas.workspace,
        chatbot=personas.chatbot,
        name="Team inbox",
        kind=Action.Kind.EMAIL,
        events=["conversation.escalated"],
        recipients=["support@example.com"],
    )
    (delivery,) = escalate_and_dispatch(personas.chatbot)
    attempt = delivery_attempt(delivery_id=delivery.pk)
    assert attempt is not None and attempt.error == "could not reach the mail server"
    delivery.refresh_from_db()
    assert delivery.status == "pending"


@pytest.mark.django_db
def test_a_slack_message_links_the_conversation_and_cannot_ping_the_channel(personas: Personas) -> None:
    with Receiver() as receiver:
        action_create(
            workspace=personas.workspace,
            chatbot=personas.chatbot,
            name="#support",
            kind=Action.Kind.SLACK,
            events=["conversation.escalated"],
            url=receiver.url,
        )
        (delivery,) = escalate_and_dispatch(personas.chatbot, page=HOSTILE_PAGE)
        attempt = delivery_attempt(delivery_id=delivery.pk)
        assert attempt is not None and attempt.outcome == "succeeded"
    (hit,) = receiver.hits
    assert "webhook-signature" not in hit.headers  # Slack is not signed
    raw = hit.body.decode()
    body = json.loads(raw)
    assert "<!channel>" not in raw and "<script>" not in raw
    fields = json.dumps(body["blocks"])
    assert "&lt;!channel&gt;" in fields and "&lt;script&gt;" in fields
    url = delivery.payload["data"]["conversation"]["url"]
    assert body["text"].endswith(f"<{url}|Open conversation>")
    button = next(b for b in body["blocks"] if b["type"] == "actions")["elements"][0]
    assert button["url"] == url


def test_slack_escape_handles_the_three_control_characters() -> None:
    assert slack_escape("a & <b> <!here> <@U123>") == "a &amp; &lt;b&gt; &lt;!here&gt; &lt;@U123&gt;"


def test_a_chatbot_name_cannot_inject_slack_markup() -> None:
    payload = {
        "type": "handoff.claimed",
        "data": {
            "chatbot": {"name": "<!everyone> & co"},
            "handoff": {"claimed_by": {"name": "<@U1>"}},
            "conversation": {"url": "https://pivra.example/c/1/"},
        },
    }
    message = json.dumps(slack_message(summarize(payload)))
    assert "<!everyone>" not in message and "<@U1>" not in message


@pytest.mark.django_db
def test_send_test_sends_a_flagged_example(personas: Personas, smtp_server: SmtpCollector) -> None:
    action = action_create(
        workspace=personas.workspace,
        chatbot=personas.chatbot,
        name="Team inbox",
        kind=Action.Kind.EMAIL,
        events=["lead.captured"],
        recipients=["support@example.com"],
    )
    delivery = action_send_test(action=action)
    assert delivery.is_test and delivery.payload["test"] is True and delivery.event_type == "lead.captured"
    attempt = delivery_attempt(delivery_id=delivery.pk)
    assert attempt is not None and attempt.outcome == "succeeded"
    (message,) = smtp_server.messages
    assert message["Subject"] == "[Test] [Acme bot] Lead captured"
    assert "+447911123456" in _part(message, "plain")
