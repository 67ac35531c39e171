"""The widget's budgets and idempotent actions, over HTTP as the widget's fallback uses them.

Rate-limit counters live in Redis per minute window, so each test uses its own client address."""

from __future__ import annotations

import itertools
from datetime import timedelta
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from conversations.models import Conversation, Visitor
from handoff.models import Handoff
from handoff.transitions.request import handoff_request
from handoff.transitions.timers import handoff_expire
from pivra.widget import operations
from tests.factories import Personas, make_personas
from tests.handoff_helpers import enable_handoff

pytestmark = pytest.mark.django_db
_addresses = (f"198.51.100.{n}" for n in itertools.count(1))


@pytest.fixture
def world() -> Personas:
    personas = make_personas()
    enable_handoff(personas.chatbot)
    return personas


class Widget:
    """One visitor's widget talking HTTP from one address."""

    def __init__(self, public_key: str, address: str) -> None:
        session = Client(REMOTE_ADDR=address).post(
            "/api/widget/session", {"public_key": public_key}, content_type="application/json"
        )
        assert session.status_code == 200, session.content
        self.session = session.json()
        self.visitor = Visitor.objects.get(public_id=self.session["visitor"])
        self.http = Client(REMOTE_ADDR=address, HTTP_AUTHORIZATION=f"Bearer {self.session['token']}")

    def post(self, path: str, **body: Any) -> Any:
        return self.http.post(f"/api/widget{path}", body, content_type="application/json")

    def say(self, client_id: str, text: str = "hi") -> Any:
        return self.post("/messages", client_id=client_id, text=text)


def test_the_ip_budget_is_shared_by_every_visitor_from_that_address(world: Personas, settings) -> None:
    settings.RATE_VISITOR_PER_MINUTE = 100
    settings.RATE_IP_PER_MINUTE = 3
    address = next(_addresses)
    alice, bob = Widget(world.chatbot.public_key, address), Widget(world.chatbot.public_key, address)
    assert [alice.say("a1").status_code, alice.say("a2").status_code, bob.say("b1").status_code] == [200] * 3
    refused = bob.say("b2")
    assert refused.status_code == 429
    assert refused.json()["code"] == "rate_limited"
    assert 1 <= int(refused["Retry-After"]) <= 60
    # The same visitor from another address still has budget: the limit was the address's.
    elsewhere = Client(REMOTE_ADDR=next(_addresses), HTTP_AUTHORIZATION=f"Bearer {bob.session['token']}")
    again = elsewhere.post("/api/widget/messages", {"client_id": "b2", "text": "hi"}, content_type="application/json")
    assert again.status_code == 200


def test_resending_a_stored_message_uses_no_budget(world: Personas, settings) -> None:
    settings.RATE_VISITOR_PER_MINUTE = 2
    widget = Widget(world.chatbot.public_key, next(_addresses))
    first = widget.say("m1")
    resends = [widget.say("m1") for _ in range(4)]
    assert [r.json() for r in resends] == [first.json()] * 4
    assert widget.say("m2").status_code == 200
    assert widget.say("m3").status_code == 429


def test_start_new_conversation_is_idempotent_per_client_id_and_rate_limited(world: Personas, settings) -> None:
    settings.RATE_VISITOR_PER_MINUTE = 2
    widget = Widget(world.chatbot.public_key, next(_addresses))
    first = widget.post("/new", client_id="n1")
    assert first.status_code == 200
    assert first.json()["state"]["conversation"] != widget.session["state"]["conversation"]
    for _ in range(3):
        again = widget.post("/new", client_id="n1")
        assert again.status_code == 200 and again.json() == first.json()
    assert Conversation.objects.filter(visitor=widget.visitor).count() == 2
    assert widget.post("/new", client_id="n2").status_code == 200  # the resends were free
    refused = widget.post("/new", client_id="n3")
    assert refused.status_code == 429 and refused.json()["code"] == "rate_limited"
    assert Conversation.objects.filter(visitor=widget.visitor).count() == 3


def test_continue_with_ai_is_idempotent_per_client_id_and_rate_limited(world: Personas, settings) -> None:
    widget = Widget(world.chatbot.public_key, next(_addresses))
    handoff = handoff_request(
        visitor=widget.visitor, conversation_public_id=widget.session["state"]["conversation"], trigger="button"
    )
    assert handoff_expire(handoff_id=handoff.pk, now=timezone.now() + timedelta(days=1))
    settings.RATE_VISITOR_PER_MINUTE = 1
    first = widget.post("/continue", client_id="c1")
    assert first.status_code == 200, first.content
    fresh = first.json()["state"]["conversation"]
    assert fresh != widget.session["state"]["conversation"]
    again = widget.post("/continue", client_id="c1")  # the reply was lost; the widget resends
    assert again.status_code == 200 and again.json()["state"]["conversation"] == fresh
    assert Conversation.objects.filter(visitor=widget.visitor).count() == 2
    refused = widget.post("/continue", client_id="c2")  # a new action: the one-a-minute budget is spent
    assert refused.status_code == 429
    assert Handoff.objects.get(pk=handoff.pk).status == Handoff.Status.BUSY  # still claimable


def test_page_reports_are_rate_limited_on_their_own_budget(world: Personas, settings) -> None:
    settings.RATE_VISITOR_PER_MINUTE = 1
    widget = Widget(world.chatbot.public_key, next(_addresses))
    operations.widget_page(visitor=widget.visitor, url="https://shop.example/one", ip="192.0.2.10")
    operations.widget_page(visitor=widget.visitor, url="https://shop.example/two", ip="192.0.2.10")
    widget.visitor.refresh_from_db()
    assert widget.visitor.current_page == "https://shop.example/one"  # the report over budget was dropped
    assert widget.say("m1").status_code == 200  # and browsing did not spend the budget for messages
