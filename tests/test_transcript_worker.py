"""The transcript reaches a real SMTP server: requested over the widget's HTTP API, enqueued on
commit, sent by a real Celery worker (a subprocess on the test database and Redis) to an aiosmtpd
receiver on loopback."""

from __future__ import annotations

import os
import signal
import time
from email.message import EmailMessage
from pathlib import Path

import pytest
import redis as redis_lib
from aiosmtpd.controller import Controller
from django.conf import settings
from django.db import connection
from django.test import Client

from conversations.models import Note
from handoff.transitions.claim import handoff_claim
from handoff.transitions.reply import handoff_reply
from handoff.transitions.resolve import handoff_resolve
from pivra.stack import celery_worker_argv, free_port, spawn
from pivra.widget.tokens import visitor_token
from tests.factories import Personas
from tests.handoff_helpers import say
from tests.test_actions_support import SmtpCollector, escalate

pytestmark = pytest.mark.django_db(transaction=True)


def _worker_env(smtp_port: int) -> dict[str, str]:
    db = connection.settings_dict
    env = {
        **os.environ,
        "PIVRA_DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "PIVRA_REDIS_URL": settings.REDIS_URL,
        "PIVRA_DB_POOL_MAX": "4",
        "PIVRA_EMAIL_HOST": "127.0.0.1",
        "PIVRA_EMAIL_PORT": str(smtp_port),
        "PIVRA_EMAIL_USE_TLS": "false",
        "PIVRA_EMAIL_FROM": "Pivra <transcripts@pivra.example>",
    }
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
    return env


def test_the_worker_sends_the_transcript_to_a_real_smtp_server(personas: Personas, tmp_path: Path) -> None:
    redis = redis_lib.Redis.from_url(settings.REDIS_URL)
    redis.delete("celery", "ai", "deliveries", "unacked", "unacked_index")
    redis.close()
    personas.owner.first_name = "Alice"
    personas.owner.save()
    conversation = escalate(personas.chatbot).conversation
    key = str(conversation.public_id)
    handoff_claim(agent=personas.owner, conversation_public_id=key)
    say(conversation.visitor, conversation, "My parcel <script>x</script> is late", client_id="v-1")
    handoff_reply(agent=personas.owner, conversation_public_id=key, text="Sorry! It ships today.", client_id="a-1")
    Note.objects.create(conversation=conversation, author=personas.owner, text="INTERNAL: refund if asked")
    handoff_resolve(agent=personas.owner, conversation_public_id=key)

    collector = SmtpCollector()
    smtp_port = free_port()
    controller = Controller(collector, hostname="127.0.0.1", port=smtp_port)
    controller.start()
    argv = celery_worker_argv(name=f"transcripts-{os.getpid()}", queues=["deliveries"], concurrency=1, loglevel="INFO")
    worker = spawn("worker", argv, env=_worker_env(smtp_port), log_file=tmp_path / "worker.log")
    try:
        response = Client().post(
            "/api/widget/transcript",
            {"client_id": "t-1", "conversation": key, "email": "visitor@example.com"},
            content_type="application/json",
            HTTP_AUTHORIZATION=f"Bearer {visitor_token(conversation.visitor)}",
        )
        assert response.status_code == 200, response.content
        deadline = time.monotonic() + 90
        while not collector.messages:
            if time.monotonic() > deadline:
                pytest.fail("no email arrived\n" + (tmp_path / "worker.log").read_text()[-4000:])
            time.sleep(0.25)
    finally:
        os.killpg(worker.process.pid, signal.SIGTERM)
        worker.process.wait(20)
        controller.stop()

    [message] = collector.messages
    [envelope] = collector.envelopes
    assert envelope.rcpt_tos == ["visitor@example.com"]
    assert envelope.mail_from == "transcripts@pivra.example"
    assert isinstance(message, EmailMessage)
    assert message["Subject"] == "Your conversation with Acme bot"
    assert message["From"] == "Pivra <transcripts@pivra.example>"
    text = message.get_body(preferencelist=("plain",))
    html = message.get_body(preferencelist=("html",))
    assert text is not None and html is not None
    text_body, html_body = text.get_content(), html.get_content()
    assert "You: My parcel <script>x</script> is late" in text_body
    assert "Alice: Sorry! It ships today." in text_body
    assert "My parcel &lt;script&gt;x&lt;/script&gt; is late" in html_body
    assert "<script>" not in html_body
    for body in (text_body, html_body):
        assert "INTERNAL" not in body
