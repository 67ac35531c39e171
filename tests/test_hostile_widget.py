"""Input is data, never a crash, on the visitor's side: every widget HTTP operation, the frame page,
the SSE stream and both sockets answer odd values with a 4xx or an error frame, never a 500 or a
hang; client ids are 1 to 64 visible characters, and reusing one across action kinds is a 409 that
counts against the visitor's budget.

On PostgreSQL (a NUL in text is refused there). Each test has a timeout, so a hang fails.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
import time_machine
from django.test import Client

from conversations.models import Event
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff
from tests.hostile_values import FIVE_THOUSAND_DIGITS, HOSTILE, check

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]

# JSON-only oddities: a lone surrogate (psycopg cannot encode it), huge and negative numbers, wrong types.
JSON_HOSTILE: list[Any] = [*HOSTILE, "\ud800", "a\udfffb", 10**30, -1, 1.5, None, [], {}, True]


@pytest.fixture(autouse=True)
def _roomy_limits(settings: Any) -> None:
    settings.RATE_VISITOR_PER_MINUTE = 1_000_000
    settings.RATE_IP_PER_MINUTE = 1_000_000


@pytest.fixture
def bot(personas: Personas) -> Any:
    return enable_handoff(personas.chatbot)


def _session(bot: Any) -> dict[str, Any]:
    response = _post(Client(), "/api/widget/session", {"public_key": bot.public_key, "locale": "en-GB"})
    assert response.status_code == 200, response.content
    return dict(response.json())


def _post(client: Client, url: str, body: Any, token: str | None = None) -> Any:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return client.post(url, json.dumps(body), content_type="application/json", headers=headers)


def _raw_post(client: Client, url: str, text: str, token: str) -> Any:
    return client.post(url, text, content_type="application/json", HTTP_AUTHORIZATION=f"Bearer {token}")


OPERATIONS: dict[str, dict[str, Any]] = {
    "/api/widget/messages": {"client_id": "m-1", "text": "Hello"},
    "/api/widget/handoff": {"client_id": "h-1"},
    "/api/widget/handoff/offer": {"client_id": "o-1", "offer_seq": 1, "accept": True},
    "/api/widget/lead": {"client_id": "l-1", "phone": "+44 7911 123456", "locale": "en-GB"},
    "/api/widget/continue": {"client_id": "c-1"},
    "/api/widget/new": {"client_id": "n-1"},
}


def test_every_widget_operation_answers_odd_field_values_without_a_500(bot: Any) -> None:
    client = Client()
    token = _session(bot)["token"]
    session = {"public_key": bot.public_key, "token": token, "locale": "en-GB", "page": "https://example.com/"}
    for value in JSON_HOSTILE:
        text = repr(value)
        for field in session:
            check(_post(client, "/api/widget/session", {**session, field: value}), text, f"session {field}")
        for url, body in OPERATIONS.items():
            for field in [*body, "x"]:
                check(_post(client, url, {**body, field: value}, token), text, f"{url} {field}")
        if value in HOSTILE:  # query strings and headers are UTF-8: no lone surrogates there
            for param in ("conversation", "after_seq"):
                response = client.get("/api/widget/events", {param: value}, HTTP_AUTHORIZATION=f"Bearer {token}")
                check(response, value, f"events {param}")
            check(client.get("/api/widget/events", HTTP_AUTHORIZATION=f"Bearer {value}"), value, "token")


def test_nul_and_lone_surrogates_in_a_json_body_are_refused_before_any_query(bot: Any) -> None:
    client = Client()
    token = _session(bot)["token"]
    for raw in ('{"client_id": "m-2", "text": "a\\u0000b"}', '{"client_id": "m-2\\ud800", "text": "hi"}'):
        response = _raw_post(client, "/api/widget/messages", raw, token)
        assert response.status_code == 400, raw
        assert response.json()["code"] == "invalid_input"
    # Declared as another type, the body is still read as JSON by the API, so it is checked the same.
    response = Client().post(
        "/api/widget/messages",
        '{"client_id": "m-2", "text": "a\\u0000b"}',
        content_type="text/plain",
        headers={"Authorization": f"Bearer {token}"},
    )
    assert response.status_code == 400
    # A number over Python's 4,300-digit limit for int() is not JSON we can read: a 4xx too.
    huge = '{"client_id": "o-2", "offer_seq": ' + FIVE_THOUSAND_DIGITS + ', "accept": true}'
    assert 400 <= _raw_post(client, "/api/widget/handoff/offer", huge, token).status_code < 500
    assert not Event.objects.filter(client_id="m-2").exists()
    # Nesting past json's recursion limit (a RecursionError, not a ValueError) or past 64 levels.
    for depth in (100, 5000):
        deep = '{"client_id": "m-3", "text": "hi", "x": ' + "[" * depth + "]" * depth + "}"
        response = _raw_post(client, "/api/widget/messages", deep, token)
        assert response.status_code == 400, depth
        assert response.json()["code"] == "invalid_input"


@pytest.mark.parametrize("client_id", ["", " ", "a b", "tab\there", "x" * 65, "line\nfeed", "\u200b\u0007", "é"])
def test_a_client_id_is_one_to_64_visible_ascii_characters(bot: Any, client_id: str) -> None:
    token = _session(bot)["token"]
    for url, body in OPERATIONS.items():
        response = _post(Client(), url, {**body, "client_id": client_id}, token)
        assert 400 <= response.status_code < 500, (url, response.content)
    assert not Event.objects.filter(client_id=client_id).exists()


def test_an_empty_client_id_is_never_stored_so_a_second_one_cannot_clash(bot: Any) -> None:
    token = _session(bot)["token"]
    for _ in range(2):
        response = _post(Client(), "/api/widget/handoff", {"client_id": ""}, token)
        assert response.status_code in (400, 422)
    assert _post(Client(), "/api/widget/handoff", {}, token).status_code == 200  # no id at all is fine


def test_a_client_id_reused_for_another_action_is_a_409_and_counts_against_the_budget(bot: Any, settings: Any) -> None:
    # Frozen clock: the rate limit counts in fixed one-minute windows, and a window boundary
    # crossed mid-test would reset the count this test reads.
    with time_machine.travel(datetime(2026, 3, 6, 12, 0, 5, tzinfo=UTC), tick=False):
        _reuse_across_kinds(bot, settings)


def _reuse_across_kinds(bot: Any, settings: Any) -> None:
    session = _session(bot)
    token = session["token"]
    client = Client()
    shared = f"id-{uuid.uuid4().hex[:8]}"
    assert _post(client, "/api/widget/messages", {"client_id": shared, "text": "Hello"}, token).status_code == 200
    # A resend of the same message is free and idempotent.
    assert _post(client, "/api/widget/messages", {"client_id": shared, "text": "Hello"}, token).status_code == 200
    settings.RATE_VISITOR_PER_MINUTE = 3  # the first message used 1; the resend was free
    for url in ("/api/widget/handoff", "/api/widget/continue"):
        response = _post(client, url, {"client_id": shared}, token)
        assert response.status_code == 409, (url, response.content)
        assert response.json()["code"] == "client_id_reused"
    # Both refusals were counted: the budget of 3 is spent, so the next action is rate limited.
    response = _post(client, "/api/widget/messages", {"client_id": "fresh", "text": "Hi"}, token)
    assert response.status_code == 429
    assert Event.objects.filter(client_id=shared).count() == 1


def test_a_client_id_reused_with_other_text_is_a_409_not_a_500(bot: Any) -> None:
    token = _session(bot)["token"]
    client = Client()
    assert _post(client, "/api/widget/handoff", {"client_id": "same"}, token).status_code == 200
    response = _post(client, "/api/widget/messages", {"client_id": "same", "text": "Hello"}, token)
    assert response.status_code == 409
    assert response.json()["code"] == "client_id_reused"


# --- the frame page -------------------------------------------------------------------------------

BROKEN_ORIGINS = [
    "http://[::1",
    "http://[::1]:99999",
    "https://[zz::1]",
    "http://a b.example",
    "javascript:alert(1)",
    "https://example.com:٣",
    "https://" + "a" * 5000 + ".com",
    "https://exa\u200bmple.com",
    "",
]


def test_the_frame_page_answers_broken_origins_with_its_unavailable_page(bot: Any) -> None:
    client = Client()
    for origin in [*BROKEN_ORIGINS, *HOSTILE]:
        response = client.get(f"/widget/frame/{bot.public_key}/", {"origin": origin})
        check(response, origin, "frame origin")
        assert response.status_code in (400, 403), origin
    for key in HOSTILE:
        check(client.get(f"/widget/frame/{key.replace(chr(0), '%00')}/"), key, "frame key")


def test_a_twin_of_another_kind_that_wins_the_race_is_a_409_from_the_unique_constraint(
    bot: Any, monkeypatch: Any
) -> None:
    """The early check and the insert are not atomic: a twin request of another kind may commit its
    event in between. The database's unique constraint then decides, and the loser gets a 409."""
    from conversations.models import Visitor
    from pivra.errors import Conflict
    from pivra.widget import operations

    session = _session(bot)
    token = session["token"]
    assert _post(Client(), "/api/widget/messages", {"client_id": "twin", "text": "Hello"}, token).status_code == 200
    monkeypatch.setattr(operations, "_limit", lambda *args, **kwargs: True)  # as if checked before the twin committed
    visitor = Visitor.objects.get(public_id=session["visitor"])
    with pytest.raises(Conflict) as refused:
        operations.widget_handoff(visitor=visitor, client_id="twin")
    assert refused.value.code == "client_id_reused"
    assert Event.objects.filter(client_id="twin").count() == 1
