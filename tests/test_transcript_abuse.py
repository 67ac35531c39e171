"""Transcript requests that could be abused: addresses, the visitor's conditions (resolved, not
superseded, the chatbot's setting, one address per conversation) and the hourly budgets (checked
all before any is counted, keyed so trivial variations share one)."""

from __future__ import annotations

from typing import Any

import pytest
import redis as redis_lib
from django.conf import settings
from django.core.cache import cache
from django.test import Client

from chatbots.models import Chatbot
from conversations import transcript_send
from conversations.transcript_limits import buckets_hit, ip_key, recipient_key
from handoff.models import Handoff
from pivra.errors import DomainError
from pivra.widget.ratelimit import RateLimited
from tests.factories import Personas
from tests.test_actions_support import escalate
from tests.test_transcript import _visitor_post, chat

pytestmark = pytest.mark.django_db
URL = "/api/widget/transcript"


@pytest.fixture(autouse=True)
def _no_celery(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcript_send.current_app, "send_task", lambda *a, **k: None)


def _fresh_budgets() -> None:
    # Only the transcript budgets: cache.clear() would flush the run's whole Redis (broker queues too).
    client = redis_lib.Redis.from_url(settings.REDIS_URL)
    try:
        for key in client.scan_iter(match=cache.make_key("rl:transcript:*")):
            client.delete(key)
    finally:
        client.close()


def _code(call: Any) -> str:
    with pytest.raises(DomainError) as refused:
        call()
    return refused.value.code


@pytest.mark.parametrize("bad", ["a@localhost", "a@[127.0.0.1]", "a@example.123", '"a b"@example.com'])
def test_addresses_djangos_validator_alone_would_take_are_refused(bad: str) -> None:
    assert _code(lambda: transcript_send.clean_transcript_email(bad)) == "invalid_email"


def test_a_superseded_conversation_gets_no_visitor_transcript(personas: Personas) -> None:
    conversation = chat(personas)
    Handoff.objects.filter(conversation=conversation).update(resolve_reason="superseded")
    response = _visitor_post(conversation, URL, {"email": "v@example.com"})
    assert (response.status_code, response.json()["code"]) == (409, "not_resolved")


def test_the_chatbot_setting_turns_visitor_transcripts_off(personas: Personas) -> None:
    conversation = chat(personas)
    Chatbot.objects.filter(pk=personas.chatbot.pk).update(transcript_emails=False)
    response = _visitor_post(conversation, URL, {"email": "v@example.com"})
    assert (response.status_code, response.json()["code"]) == (403, "transcripts_off")
    conversation.refresh_from_db()  # agents still may
    assert transcript_send.transcript_request(conversation=conversation, email="v@example.com", by="agent")


def test_a_visitor_sends_one_conversation_to_one_mailbox_only(personas: Personas) -> None:
    conversation = chat(personas)
    assert _visitor_post(conversation, URL, {"email": "Me+chat@Example.com"}).status_code == 200
    other = _visitor_post(conversation, URL, {"email": "stranger@example.com"})
    assert (other.status_code, other.json()["code"]) == (409, "transcript_address_locked")
    assert _visitor_post(conversation, URL, {"email": "me@example.com"}).status_code == 200  # the same mailbox


def test_keys_normalise_ipv6_networks_and_mailboxes() -> None:
    assert ip_key("2001:db8:1:2:aaaa::1") == ip_key("2001:db8:1:2:ffff::9") == "2001:db8:1:2::/64"
    assert ip_key("2001:db8:1:3::1") != ip_key("2001:db8:1:2::1")
    assert ip_key("10.0.0.1") == "10.0.0.1"
    assert (
        recipient_key("Victim+a@Example.COM")
        == recipient_key("victim+b@example.com")
        == recipient_key("victim@example.com")
    )
    assert recipient_key("victim@example.com") != recipient_key("victim2@example.com")


def test_one_ipv6_64_shares_the_visitors_ip_budget(personas: Personas, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(transcript_send, "PER_IP", 1)
    first, second = chat(personas), chat(personas)
    assert _visitor_post(first, URL, {"email": "a@example.com"}, ip="2001:db8::1").status_code == 200
    refused = _visitor_post(second, URL, {"email": "b@example.com"}, ip="2001:db8::2:1")
    assert (refused.status_code, refused.json()["code"]) == (429, "rate_limited")


def test_per_chatbot_per_workspace_and_overall_budgets(
    personas: Personas, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    conversations = [chat(personas) for _ in range(3)]

    def send(i: int) -> str:
        return transcript_send.transcript_request(conversation=conversations[i], email=f"x{i}@example.com", by="agent")

    monkeypatch.setattr(transcript_send, "PER_CHATBOT", 2)
    send(0), send(1)
    assert _code(lambda: send(2)) == "rate_limited"
    _fresh_budgets()
    monkeypatch.setattr(transcript_send, "PER_CHATBOT", 20)
    monkeypatch.setattr(transcript_send, "PER_WORKSPACE", 1)
    send(0)
    assert _code(lambda: send(1)) == "rate_limited"
    _fresh_budgets()
    monkeypatch.setattr(transcript_send, "PER_WORKSPACE", 100)
    settings.TRANSCRIPTS_PER_HOUR = 2
    send(0), send(1)
    assert _code(lambda: send(2)) == "rate_limited"


def test_agents_pay_no_ip_budget_and_their_recipient_budget_is_their_workspaces(
    personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(transcript_send, "PER_IP", 1)
    monkeypatch.setattr(transcript_send, "PER_RECIPIENT", 1)
    client = Client()
    client.force_login(personas.owner)
    for conversation in (chat(personas), chat(personas)):
        url = f"/api/console/conversations/{conversation.public_id}/transcript"
        response = client.post(url, {"email": f"{conversation.pk}@example.com"}, content_type="application/json")
        assert response.status_code == 200, response.content  # one IP, two sends
    # Another workspace's agents used up "shared@" in theirs: ours is untouched.
    theirs = escalate(personas.other_chatbot).conversation
    transcript_send.transcript_request(conversation=theirs, email="shared@example.com", by="agent")
    assert _code(
        lambda: transcript_send.transcript_request(conversation=theirs, email="shared@example.com", by="agent")
    )
    assert transcript_send.transcript_request(conversation=chat(personas), email="shared@example.com", by="agent")


def test_a_refusal_by_one_budget_costs_nothing_in_the_others(
    personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    with pytest.raises(RateLimited):
        buckets_hit([("test:free", 5), ("test:full", 0)])
    buckets_hit([("test:free", 1)])  # still its whole budget of one
    monkeypatch.setattr(transcript_send, "PER_VISITOR", 1)
    monkeypatch.setattr(transcript_send, "PER_RECIPIENT", 1)
    assert _visitor_post(chat(personas), URL, {"email": "full@example.com"}, ip="10.0.0.9").status_code == 200
    conversation = chat(personas)
    refused = _visitor_post(conversation, URL, {"email": "full@example.com"})
    assert (refused.status_code, refused.json()["code"]) == (429, "rate_limited")
    # The recipient refused it: the visitor's one send per hour and the address lock are still free.
    assert _visitor_post(conversation, URL, {"email": "mine@example.com"}).status_code == 200


def test_a_resend_while_the_first_is_in_flight_sends_nothing(personas: Personas) -> None:
    conversation = chat(personas)
    cache.set(f"widget:transcript:{conversation.visitor.public_id}:same", "", timeout=60)  # the first: pending
    response = _visitor_post(conversation, URL, {"client_id": "same", "email": "v@example.com"})
    assert (response.status_code, response.json()["code"]) == (409, "transcript_pending")
