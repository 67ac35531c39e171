"""Input is data, never a crash: odd values in every console page, console API operation and widget
operation get a 4xx (or are ignored), never a 500 and never a hang.

On PostgreSQL, which refuses a NUL in text (SQLite stores it and hid all of this). Streaming
responses are read to the end; each test has a timeout, so a stream that never ends fails.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.http import StreamingHttpResponse
from django.test import Client
from django.urls import reverse

from actions.models import Action
from actions.services import action_create, action_send_test
from chatbots.forms import GeneralSettingsForm, HandoffSettingsForm
from chatbots.models import KnowledgeEntry
from handoff.transitions.claim import handoff_claim
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request, say
from tests.hostile_values import FIVE_THOUSAND_DIGITS, HOSTILE, NUL, check, read

pytestmark = [pytest.mark.django_db, pytest.mark.timeout(60)]


@pytest.fixture(autouse=True)
def _roomy_limits(settings: Any) -> None:
    # Hundreds of requests from one visitor: a 429 would hide what the operation does with the value.
    settings.RATE_VISITOR_PER_MINUTE = 1_000_000
    settings.RATE_IP_PER_MINUTE = 1_000_000
    settings.WEBHOOK_ALLOW_PRIVATE = True


@pytest.fixture
def world(personas: Personas) -> dict[str, Any]:
    bot = enable_handoff(personas.chatbot)
    visitor, conversation = new_visitor(bot)
    say(visitor, conversation, "Where is my order?")
    request(visitor, conversation)
    handoff_claim(agent=personas.owner, conversation_public_id=str(conversation.public_id))
    action = action_create(
        workspace=personas.workspace,
        chatbot=bot,
        name="CRM",
        kind=Action.Kind.WEBHOOK,
        events=["conversation.escalated"],
        url="https://crm.example.com/hooks/pivra",
    )
    delivery = action_send_test(action=action)
    entry = KnowledgeEntry.objects.create(chatbot=bot, question="Opening hours?", answer="9 to 5")
    client = Client()
    client.force_login(personas.owner)
    return {
        "client": client,
        "bot": bot,
        "conversation": conversation,
        "action": action,
        "delivery": delivery,
        "entry": entry,
    }


# --- console pages --------------------------------------------------------------------------------

LIST_PARAMS = ["tab", "q", "status", "from", "to", "chatbot", "page", "fragment"]


def _console_pages(world: dict[str, Any]) -> Iterator[tuple[str, list[str]]]:
    """(url, the query parameters it reads) for every console page an agent can GET."""
    conversation = str(world["conversation"].public_id)
    action, delivery = world["action"].pk, world["delivery"].pk
    yield reverse("dashboard:home"), ["x"]
    yield reverse("dashboard:conversations"), LIST_PARAMS
    yield reverse("dashboard:conversations-export", args=["csv"]), LIST_PARAMS
    yield reverse("dashboard:conversations-export", args=["json"]), LIST_PARAMS
    yield reverse("dashboard:conversation", args=[conversation]), ["x"]
    yield reverse("dashboard:conversation-state", args=[conversation]), ["x"]
    yield reverse("dashboard:conversation-export", args=[conversation, "csv"]), ["x"]
    yield reverse("dashboard:conversation-export", args=[conversation, "json"]), ["x"]
    yield reverse("dashboard:analytics"), ["days"]
    yield reverse("dashboard:chatbot-settings"), ["chatbot"]
    yield reverse("dashboard:actions"), ["x"]
    yield reverse("dashboard:action-create"), ["x"]
    yield reverse("dashboard:action-detail", args=[action]), ["page"]
    yield reverse("dashboard:action-edit", args=[action]), ["x"]
    yield reverse("dashboard:action-delete", args=[action]), ["x"]
    yield reverse("dashboard:action-delivery", args=[action, delivery]), ["x"]


def test_every_console_page_answers_odd_query_values_without_a_500(world: dict[str, Any]) -> None:
    client: Client = world["client"]
    for url, params in _console_pages(world):
        assert client.get(url).status_code == 200, url
        for param in params:
            for value in HOSTILE:
                check(client.get(url, {param: value}), value, f"GET {url}?{param}")


def test_far_and_broken_dates_in_the_list_filters_are_a_400_with_the_problem_named(world: dict[str, Any]) -> None:
    client: Client = world["client"]
    for value in ("9999-12-31", "0001-01-01", "²⁰²⁶-01-01", "2026-13-45"):
        page = client.get(reverse("dashboard:conversations"), {"to": value})
        assert page.status_code == 400, value
        assert b"filter-problems" in page.content
        export = client.get(reverse("dashboard:conversations-export", args=["csv"]), {"from": value})
        assert export.status_code == 400
        assert not isinstance(export, StreamingHttpResponse)  # refused before any stream starts
    assert client.get(reverse("dashboard:conversations"), {"to": "2099-12-31"}).status_code == 200


def test_a_nul_in_the_search_is_refused_before_the_export_streams(world: dict[str, Any]) -> None:
    client: Client = world["client"]
    for fmt in ("csv", "json"):
        response = client.get(reverse("dashboard:conversations-export", args=[fmt]), {"q": NUL})
        assert response.status_code == 400
        assert not isinstance(response, StreamingHttpResponse)
    # The same search without the NUL streams as usual.
    ok = client.get(reverse("dashboard:conversations-export", args=["json"]), {"q": "order", "tab": "handoff"})
    assert json.loads(read(ok))["conversations"][0]["conversation"] == str(world["conversation"].public_id)


def test_unicode_digits_and_huge_numbers_pick_nothing_they_do_not_name(world: dict[str, Any]) -> None:
    client: Client = world["client"]
    for value in ("²", "٣", FIVE_THOUSAND_DIGITS, "7.0"):
        assert client.get(reverse("dashboard:analytics"), {"days": value}).status_code == 400
    assert client.get(reverse("dashboard:analytics"), {"days": "7"}).context["stats"].days == 7
    # A plain number the page does not offer (an edited link) falls back to the default period.
    assert client.get(reverse("dashboard:analytics"), {"days": "1000000"}).status_code == 200


def test_a_nul_in_a_path_a_header_or_a_cookie_is_refused_at_the_edge(world: dict[str, Any]) -> None:
    client: Client = world["client"]
    page = reverse("dashboard:conversations")
    check(client.get(page, HTTP_USER_AGENT=NUL), NUL, "User-Agent")
    check(client.get(page, HTTP_X_REQUESTED_WITH=NUL), NUL, "a header")
    check(client.get(page.rstrip("/") + "%00/"), NUL, "path")
    client.cookies["sessionid"] = NUL
    check(client.get(page), NUL, "session cookie")


def _valid_posts(world: dict[str, Any]) -> Iterator[tuple[str, dict[str, Any]]]:
    """(url, a valid form) for every console form an agent can POST."""
    bot, action, delivery, entry = world["bot"], world["action"], world["delivery"], world["entry"]
    general = {k: v for k, v in GeneralSettingsForm.for_chatbot(bot).initial.items() if v is not None}
    handoff = {k: v for k, v in HandoffSettingsForm.for_chatbot(bot).initial.items() if v is not None}
    settings_url = reverse("dashboard:chatbot-settings")
    yield settings_url, {**general, "section": "general", "chatbot": bot.pk}
    yield settings_url, {**handoff, "section": "handoff", "chatbot": bot.pk}
    yield settings_url, {"section": "languages", "chatbot": bot.pk, "language": "", "default_language": "en"}
    yield (
        settings_url,
        {
            "section": "variants",
            "chatbot": bot.pk,
            "variant": "fr",
            "texts-greeting": "Bonjour",
            "texts-waiting": "",
            "texts-busy": "",
            "texts-offline": "",
            "texts-keywords": "",
        },
    )
    yield reverse("dashboard:knowledge-save"), {"chatbot": bot.pk, "entry": entry.pk, "question": "Q", "answer": "A"}
    yield reverse("dashboard:knowledge-delete", args=[entry.pk]), {"chatbot": bot.pk}
    yield reverse("dashboard:switch-workspace"), {"workspace": bot.workspace_id}
    form = {
        "chatbot": bot.pk,
        "name": "Zapier",
        "kind": "webhook",
        "events": "conversation.escalated",
        "url": "https://hooks.zapier.com/hooks/catch/1/abc/",
        "recipients": "",
    }
    yield reverse("dashboard:action-create"), form
    yield reverse("dashboard:action-edit", args=[action.pk]), form
    for name in ("action-pause", "action-resume", "action-test", "action-rotate-secret"):
        yield reverse(f"dashboard:{name}", args=[action.pk]), {"next": "/dashboard/actions/"}
    yield reverse("dashboard:action-redeliver", args=[action.pk, delivery.pk]), {"next": "/dashboard/actions/"}


def test_every_console_form_answers_odd_field_values_without_a_500(world: dict[str, Any]) -> None:
    client: Client = world["client"]
    for url, form in _valid_posts(world):
        for field in [*form, "x"]:
            for value in [*HOSTILE, "http://" + "a" * 5000]:
                check(client.post(url, {**form, field: value}), value, f"POST {url} {field}")


# --- console API ----------------------------------------------------------------------------------


def _post_json(client: Client, url: str, body: Any) -> Any:
    return client.post(url, json.dumps(body), content_type="application/json")


def test_every_console_api_operation_answers_odd_values_without_a_500(world: dict[str, Any]) -> None:
    client: Client = world["client"]
    good = str(world["conversation"].public_id)
    for value in HOSTILE:
        check(client.get("/api/console/handoffs", {"status": value}), value, "GET handoffs")
        for conversation in (value, good):
            check(client.get(f"/api/console/conversations/{conversation}", {"x": value}), value, "GET conversation")
        for action in ("claim", "resolve"):
            check(_post_json(client, f"/api/console/handoffs/{value}/{action}", {}), value, action)
        reply = f"/api/console/handoffs/{good}/reply"
        for field in ("client_id", "text"):
            body = {"client_id": "c-1", "text": "Hello", field: value}
            check(_post_json(client, reply, body), value, f"reply {field}")
    for body in ({"client_id": "c\ud800", "text": "Hi"}, {"client_id": "", "text": "Hi"}, {"client_id": "a b"}):
        response = _post_json(client, f"/api/console/handoffs/{good}/reply", body)
        assert 400 <= response.status_code < 500, body


# --- the request's encoding and the body's real format --------------------------------------------

EVERY_KIND_OF_ADDRESS = ("/api/widget/session", "/healthz", "/accounts/login/", "/widget/frame/pk_x/")
ONE_FIELD_MULTIPART = b'--x\r\nContent-Disposition: form-data; name="a"\r\n\r\nb\r\n--x--\r\n'


@pytest.mark.parametrize("charset", ["rot13", "base64", "zlib", "idna", "undefined"])
def test_a_charset_that_is_not_a_text_encoding_is_a_400_on_every_address(charset: str) -> None:
    for url in EVERY_KIND_OF_ADDRESS:
        for content_type, body in (
            (f"multipart/form-data; boundary=x; charset={charset}", ONE_FIELD_MULTIPART),
            (f"application/x-www-form-urlencoded; charset={charset}", b"a=b"),
        ):
            response = Client().generic("POST", url, body, content_type=content_type)
            assert response.status_code == 400, (url, content_type, response.status_code)
            if url.startswith("/api/"):
                assert response.json()["code"] == "invalid_input"
            else:
                assert response["Content-Type"].startswith("text/plain")
            assert b"charset" in response.content


def test_a_text_charset_or_an_unknown_one_is_read_as_usual() -> None:
    form = "application/x-www-form-urlencoded"
    for charset in ("utf-8", "UTF-8", "no-such-charset"):  # Django ignores a name it does not know
        response = Client().generic("POST", "/accounts/login/", b"username=a&password=b", f"{form}; charset={charset}")
        assert response.status_code == 200, charset  # the login page again, with its error
    multipart = Client().generic(
        "POST", "/accounts/login/", ONE_FIELD_MULTIPART, "multipart/form-data; boundary=x; charset=latin-1"
    )
    assert multipart.status_code == 200
    # A form that is not UTF-8 is refused by Django (RFC 1866); in the API's format under /api/.
    api = Client().generic("POST", "/api/widget/session", b"a=b", f"{form}; charset=latin-1")
    assert api.status_code == 400
    assert api.json()["code"] == "invalid_input"


@pytest.mark.parametrize(
    "content_type", ["application/x-www-form-urlencoded", "text/plain", "application/octet-stream", ""]
)
def test_a_json_body_reaches_the_api_checked_whatever_its_declared_type(personas: Personas, content_type: str) -> None:
    key = personas.chatbot.public_key
    for hostile in ("en\x00GB", "en\ud800"):
        # json.dumps escapes both (\u0000, \ud800): a form parser sees no forbidden character, the API's JSON one does.
        body = json.dumps({"public_key": key, "locale": hostile})
        response = Client().generic("POST", "/api/widget/session", body, content_type=content_type)
        assert response.status_code == 400, (content_type, hostile, response.content[:200])
        assert response.json()["code"] == "invalid_input"
        assert "not allowed" in response.json()["detail"]
    clean = Client().generic("POST", "/api/widget/session", json.dumps({"public_key": key}), content_type=content_type)
    assert clean.status_code == 200, (content_type, clean.content[:200])
