"""The transcript by email: what it holds (messages as the visitor saw them, escaped, attachments by
name, never an internal note), who may ask, the address check and the rate limits."""

from __future__ import annotations

from typing import Any

import pytest
from django.core import mail
from django.db import transaction
from django.test import Client

from conversations import transcript_send
from conversations.models import Conversation, Event, Note
from conversations.services import conversation_lock, event_append
from conversations.transcript import transcript_render
from handoff.transitions.claim import handoff_claim
from handoff.transitions.reply import handoff_reply
from handoff.transitions.resolve import handoff_resolve
from pivra.errors import DomainError
from pivra.widget.tokens import visitor_token
from tests.factories import Personas
from tests.handoff_helpers import say
from tests.test_actions_support import escalate

pytestmark = pytest.mark.django_db


def _append(conversation: Conversation, **fields: Any) -> Event:
    with transaction.atomic():
        locked = conversation_lock(conversation_id=conversation.pk)
        return event_append(conversation=locked, **fields)


def chat(personas: Personas, *, resolve: bool = True) -> Conversation:
    """A visitor message, an AI answer, an agent's reply with an attachment, an internal note; resolved."""
    personas.owner.first_name = "Alice"
    personas.owner.save()
    handoff = escalate(personas.chatbot)
    conversation = handoff.conversation
    key = str(conversation.public_id)
    _append(conversation, kind="message", author=Event.Author.AI, text="I can help with <b>orders</b>.")
    handoff_claim(agent=personas.owner, conversation_public_id=key)
    say(conversation.visitor, conversation, "Hi <script>alert(1)</script> & thanks", client_id="v-1")
    handoff_reply(agent=personas.owner, conversation_public_id=key, text="Here you go\nsecond line", client_id="a-1")
    _append(
        conversation,
        kind="message",
        author=Event.Author.AGENT,
        agent=personas.owner,
        text="invoice<1>.pdf",  # a file's message: its name is the text (attachments)
        data={"attachment": {"id": "x", "name": "invoice<1>.pdf", "url": "/secret/signed-url", "size": 10}},
    )
    Note.objects.create(conversation=conversation, author=personas.owner, author_name="owner", text="SECRET NOTE 42")
    if resolve:
        handoff_resolve(agent=personas.owner, conversation_public_id=key)
    conversation.refresh_from_db()
    return conversation


def test_the_transcript_holds_the_messages_escaped_and_never_a_note(personas: Personas) -> None:
    conversation = chat(personas)
    subject, text, html = transcript_render(conversation=conversation)

    assert subject == "Your conversation with Acme bot"
    for part in (text, html):
        assert "SECRET NOTE" not in part
        assert "/secret/signed-url" not in part
        assert personas.owner.username not in part.replace("owner@", "")  # the public name only
        assert "Conversation resolved" not in part  # system lines stay out
        assert personas.chatbot.handoff_waiting_message not in part
    assert "You: Hi <script>alert(1)</script> & thanks" in text
    assert "Acme bot: I can help with <b>orders</b>." in text
    assert "Alice: Here you go\n    second line" in text
    assert "Alice:\n    \U0001f4ce invoice<1>.pdf (10 B)" in text  # the name and size once, never the link
    assert text.count("invoice<1>.pdf") == 1
    assert "<script>" not in html
    assert "Hi &lt;script&gt;alert(1)&lt;/script&gt; &amp; thanks" in html
    assert "I can help with &lt;b&gt;orders&lt;/b&gt;." in html
    assert "Here you go<br>second line" in html
    assert "invoice&lt;1&gt;.pdf" in html
    assert html.index("I can help") < html.index("Hi &lt;script") < html.index("Here you go")


def test_an_agent_without_a_first_name_is_a_support_agent_never_their_username(personas: Personas) -> None:
    handoff = escalate(personas.chatbot)
    key = str(handoff.conversation.public_id)
    handoff_claim(agent=personas.teammate, conversation_public_id=key)
    handoff_reply(agent=personas.teammate, conversation_public_id=key, text="Hello!", client_id="a-1")
    _, text, html = transcript_render(conversation=handoff.conversation)
    assert "Support agent: Hello!" in text
    assert "teammate" not in text and "teammate" not in html


def test_the_subject_is_one_header_line_whatever_the_chatbot_is_called(personas: Personas) -> None:
    personas.chatbot.name = "Evil\r\nBcc: victim@example.com\x07"
    personas.chatbot.save()
    conversation = chat(personas)
    subject, _, _ = transcript_render(conversation=conversation)
    assert "\n" not in subject and "\r" not in subject
    message = transcript_send.transcript_email(conversation=conversation, to="visitor@example.com")
    assert message.message()["Bcc"] is None
    assert message.message()["Subject"] == "Your conversation with Evil Bcc: victim@example.com"


def test_the_email_has_text_and_html_from_the_operators_address(personas: Personas, settings: Any) -> None:
    settings.EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
    settings.DEFAULT_FROM_EMAIL = "Pivra <no-reply@pivra.example>"
    conversation = chat(personas)
    assert transcript_send.transcript_deliver(conversation_id=conversation.pk, email="v@example.com", request_id="r1")
    assert not transcript_send.transcript_deliver(  # a redelivered task sends nothing twice
        conversation_id=conversation.pk, email="v@example.com", request_id="r1"
    )
    [message] = mail.outbox
    assert message.from_email == "Pivra <no-reply@pivra.example>"
    assert message.to == ["v@example.com"]
    assert "You: Hi <script>" in message.body
    [(html, mimetype)] = message.alternatives  # type: ignore[attr-defined]
    assert mimetype == "text/html" and "&lt;script&gt;" in html


def _visitor_post(conversation: Conversation, path: str, body: dict[str, Any], ip: str = "10.0.0.1") -> Any:
    auth: dict[str, Any] = {"HTTP_AUTHORIZATION": f"Bearer {visitor_token(conversation.visitor)}", "REMOTE_ADDR": ip}
    return Client().post(path, body, content_type="application/json", **auth)


def test_a_visitor_asks_on_the_resolved_screen_and_the_task_is_enqueued_by_name_on_commit(
    personas: Personas, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    conversation = chat(personas)
    sent: list[tuple[str, list[Any], str]] = []
    monkeypatch.setattr(
        transcript_send.current_app, "send_task", lambda name, args, queue: sent.append((name, args, queue))
    )
    with django_capture_on_commit_callbacks(execute=True):
        response = _visitor_post(
            conversation,
            "/api/widget/transcript",
            {"client_id": "t-1", "conversation": str(conversation.public_id), "email": "visitor@example.com"},
        )
    assert response.status_code == 200, response.content
    assert response.json() == {"client_id": "t-1", "email": "visitor@example.com"}
    [(name, args, queue)] = sent
    assert (name, queue) == ("conversations.tasks.send_transcript", "deliveries")
    assert args[:2] == [conversation.pk, "visitor@example.com"]


def test_an_invalid_address_gets_a_clear_error(personas: Personas) -> None:
    conversation = chat(personas)
    for bad in ["not-an-email", "a@b", "x@example.com\r\nBcc: y@example.com", "", "a" * 250 + "@example.com"]:
        response = _visitor_post(conversation, "/api/widget/transcript", {"email": bad})
        assert response.status_code == 422, bad
        assert response.json()["code"] in {"invalid_email", "invalid_input"}, bad
    response = _visitor_post(conversation, "/api/widget/transcript", {"email": "nope"})
    assert response.json() == {"code": "invalid_email", "detail": "Please enter a valid email address."}


def test_a_visitor_cannot_ask_before_the_resolve(personas: Personas) -> None:
    conversation = chat(personas, resolve=False)
    response = _visitor_post(conversation, "/api/widget/transcript", {"email": "v@example.com"})
    assert (response.status_code, response.json()["code"]) == (409, "not_resolved")


def test_three_per_conversation_per_hour(personas: Personas, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcript_send.current_app, "send_task", lambda *a, **k: None)
    conversation = chat(personas)
    codes = [
        _visitor_post(conversation, "/api/widget/transcript", {"email": "v@example.com"}, ip=f"10.0.0.{i}")
        for i in range(4)
    ]
    assert [r.status_code for r in codes] == [200, 200, 200, 429]
    assert codes[3].json()["code"] == "rate_limited"
    assert codes[3].json()["detail"].startswith("Too many transcript requests. Try again in ")
    assert codes[3]["Retry-After"]
    # The agents have a budget of their own: a visitor cannot use it up.
    assert transcript_send.transcript_request(
        conversation=conversation, email="x@example.com", by="agent", user_id=personas.owner.pk
    )


def test_one_recipient_and_one_visitor_are_bounded_across_conversations(
    personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transcript_send.current_app, "send_task", lambda *a, **k: None)
    conversations = [chat(personas) for _ in range(6)]
    answers = [
        transcript_send.transcript_request(conversation=c, email="Target@Example.com", by="agent")
        for c in conversations[:5]
    ]
    assert len(answers) == transcript_send.PER_RECIPIENT
    with pytest.raises(DomainError) as refused:
        transcript_send.transcript_request(conversation=conversations[5], email="target@example.com", by="agent")
    assert refused.value.code == "rate_limited"


def test_a_resend_of_the_same_widget_request_sends_no_second_email(
    personas: Personas, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    sent: list[Any] = []
    monkeypatch.setattr(transcript_send.current_app, "send_task", lambda *a, **k: sent.append(a))
    conversation = chat(personas)
    for _ in range(3):
        with django_capture_on_commit_callbacks(execute=True):
            response = _visitor_post(
                conversation, "/api/widget/transcript", {"client_id": "same", "email": "v@example.com"}
            )
        assert response.status_code == 200
    assert len(sent) == 1


def _console(user: Any) -> Client:
    client = Client()  # the test client waives CSRF (tests/test_api_errors.py checks the header is required)
    client.force_login(user)
    return client


def test_members_send_it_from_the_console_and_outsiders_cannot(
    personas: Personas, monkeypatch: pytest.MonkeyPatch, django_capture_on_commit_callbacks: Any
) -> None:
    sent: list[Any] = []
    monkeypatch.setattr(transcript_send.current_app, "send_task", lambda name, args, queue: sent.append(args))
    conversation = chat(personas, resolve=False)  # agents may send it while the chat is still open
    url = f"/api/console/conversations/{conversation.public_id}/transcript"
    with django_capture_on_commit_callbacks(execute=True):
        response = _console(personas.teammate).post(url, {"email": "lead@example.com"}, content_type="application/json")
    assert response.status_code == 200, response.content
    assert response.json() == {"email": "lead@example.com"}
    refused = _console(personas.outsider).post(url, {"email": "x@example.com"}, content_type="application/json")
    assert (refused.status_code, refused.json()["code"]) == (404, "conversation_not_found")
    bad = _console(personas.owner).post(url, {"email": "nope"}, content_type="application/json")
    assert (bad.status_code, bad.json()["code"]) == (422, "invalid_email")
    anonymous = Client().post(url, {"email": "x@example.com"}, content_type="application/json")
    assert anonymous.status_code in (401, 403)
    assert len(sent) == 1


def test_the_conversation_page_offers_the_dialog_with_the_leads_address(personas: Personas) -> None:
    conversation = chat(personas)
    Conversation.objects.filter(pk=conversation.pk).update(lead={"email": '"><script>x</script>@example.com'})
    client = Client()
    client.force_login(personas.owner)
    html = client.get(f"/dashboard/conversations/{conversation.public_id}/").content.decode()
    assert "data-email-transcript" in html and "data-transcript-dialog" in html
    assert "<script>x</script>" not in html
