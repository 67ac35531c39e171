"""Every refusal under /api/ is JSON ``{code, detail}`` (bodies that are not objects, malformed JSON
or multipart, unknown paths, wrong methods, unexpected exceptions, CSRF), pages get readable HTML,
and the schema says what the server enforces."""

from __future__ import annotations

import json
import logging
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.core.exceptions import PermissionDenied, SuspiciousOperation
from django.test import Client
from django.test.client import RequestFactory
from django.views.defaults import bad_request, permission_denied, server_error

from tests.factories import Personas
from tests.handoff_helpers import enable_handoff

pytestmark = pytest.mark.django_db

WIDGET_BODY_OPERATIONS = ["session", "messages", "handoff", "handoff/offer", "lead", "continue", "new"]
NOT_OBJECTS = ["[]", '[{"client_id": "c-1", "text": "hi"}]', "5", '"text"', "null", "true"]


def _error(response: Any, status: int, code: str | None = None) -> dict[str, Any]:
    assert response.status_code == status, (response.status_code, response.content[:300])
    assert response["Content-Type"].startswith("application/json"), response["Content-Type"]
    body = response.json()
    assert set(body) == {"code", "detail"} and body["detail"], body
    if code is not None:
        assert body["code"] == code, body
    return body


@pytest.fixture
def visitor_client(personas: Personas) -> Client:
    enable_handoff(personas.chatbot)
    session = Client().post(
        "/api/widget/session", {"public_key": personas.chatbot.public_key}, content_type="application/json"
    )
    return Client(HTTP_AUTHORIZATION=f"Bearer {session.json()['token']}")


@pytest.fixture
def agent_client(personas: Personas) -> Client:
    client = Client()
    client.force_login(personas.owner)
    return client


def test_a_body_that_is_not_a_json_object_is_refused(visitor_client: Client) -> None:
    for operation in WIDGET_BODY_OPERATIONS:
        for body in NOT_OBJECTS:
            response = visitor_client.post(f"/api/widget/{operation}", body, content_type="application/json")
            assert "object" in _error(response, 400, "invalid_input")["detail"], (operation, body)


def test_the_console_reply_refuses_an_array_body(agent_client: Client) -> None:
    response = agent_client.post(
        "/api/console/handoffs/8d0b3f4e-6f0c-4a43-9a59-2f1d1a9f0c11/reply", "[]", content_type="application/json"
    )
    _error(response, 400, "invalid_input")


def test_malformed_json_is_a_json_400(visitor_client: Client) -> None:
    _error(
        visitor_client.post("/api/widget/messages", "{not json", content_type="application/json"), 400, "invalid_input"
    )


def test_fields_the_schema_does_not_declare_are_refused(visitor_client: Client) -> None:
    response = visitor_client.post(
        "/api/widget/messages", {"client_id": "c-1", "text": "hi", "admin": True}, content_type="application/json"
    )
    _error(response, 422, "invalid_input")


def test_text_without_a_visible_character_is_refused_by_the_schema(visitor_client: Client) -> None:
    for text in ("", "   ", "\n\t ", "\u2003"):
        response = visitor_client.post(
            "/api/widget/messages", {"client_id": "c-1", "text": text}, content_type="application/json"
        )
        _error(response, 422, "empty_message")  # the service's code, which the clients know


def test_a_message_over_the_length_limit_keeps_the_code_the_widget_handles(visitor_client: Client) -> None:
    text = "x" * (django_settings.MESSAGE_MAX_LENGTH + 1)
    response = visitor_client.post(
        "/api/widget/messages", {"client_id": "c-1", "text": text}, content_type="application/json"
    )
    _error(response, 413, "message_too_long")


@pytest.mark.parametrize("client_id", ["", " ", "a b", "x" * 65, "tab\there"])
def test_a_client_id_that_is_not_1_to_64_visible_characters_is_refused(visitor_client: Client, client_id: str) -> None:
    response = visitor_client.post(
        "/api/widget/messages", {"client_id": client_id, "text": "hi"}, content_type="application/json"
    )
    _error(response, 422, "invalid_client_id")


def test_a_phone_typed_with_letters_is_an_invalid_phone_the_widget_shows_inline(visitor_client: Client) -> None:
    response = visitor_client.post("/api/widget/lead", {"phone": "call me maybe"}, content_type="application/json")
    _error(response, 422, "invalid_phone")


def test_an_unknown_path_under_the_api_is_a_json_404() -> None:
    for path in ("/api/nope", "/api/widget/nope", "/api/console/handoffs/x/y/z"):
        _error(Client().get(path), 404, "not_found")


def test_a_wrong_method_is_a_json_405_with_allow() -> None:
    response = Client().get("/api/widget/messages")
    _error(response, 405, "method_not_allowed")
    assert "POST" in response["Allow"]
    _error(Client().delete("/api/console/handoffs"), 405, "method_not_allowed")


def test_an_unexpected_exception_is_a_logged_json_500(
    visitor_client: Client, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> None:
        raise RuntimeError("boom in events")

    monkeypatch.setattr("pivra.widget.operations.widget_events", broken)
    visitor_client.raise_request_exception = False
    with caplog.at_level(logging.ERROR):
        body = _error(visitor_client.get("/api/widget/events"), 500, "server_error")
    assert "boom" not in body["detail"]  # no internals to the client …
    assert any(r.exc_info and "boom in events" in str(r.exc_info[1]) for r in caplog.records)  # … all in the log


def test_a_malformed_multipart_body_is_a_json_400(agent_client: Client) -> None:
    for client, path in (
        (Client(), "/api/widget/session"),
        (agent_client, "/api/console/handoffs/8d0b3f4e-6f0c-4a43-9a59-2f1d1a9f0c11/claim"),
    ):
        response = client.generic(
            "POST", path, b"--broken\r\nnot a part", content_type="multipart/form-data; boundary=other"
        )
        assert 400 <= response.status_code < 500, (path, response.status_code)
        _error(response, response.status_code)


def test_a_console_post_without_the_csrf_header_is_a_json_403(personas: Personas) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(personas.owner)
    response = client.post("/api/console/handoffs/8d0b3f4e-6f0c-4a43-9a59-2f1d1a9f0c11/claim")
    assert "X-CSRFToken" in _error(response, 403, "csrf_failed")["detail"]


def test_pages_outside_the_api_get_readable_html_errors() -> None:
    response = Client().get("/dashboard/no-such-page/")
    assert response.status_code == 404
    assert response["Content-Type"].startswith("text/html")
    assert b"Page not found" in response.content
    request = RequestFactory().get("/dashboard/")
    crashed = server_error(request)
    assert crashed.status_code == 500 and b"Something went wrong" in crashed.content
    refused = permission_denied(request, PermissionDenied())
    assert refused.status_code == 403 and b"open this page" in refused.content
    unreadable = bad_request(request, SuspiciousOperation())
    assert unreadable.status_code == 400 and b"could not be read" in unreadable.content


def test_the_api_docs_page_renders() -> None:
    response = Client().get("/api/docs")
    assert response.status_code == 200 and b"openapi.json" in response.content


def test_the_schema_documents_the_csrf_header_and_every_error() -> None:
    schema = json.loads(Client().get("/api/openapi.json").content)
    schemes = schema["components"]["securitySchemes"]
    assert schemes["CSRFToken"] == {**schemes["CSRFToken"], "type": "apiKey", "in": "header", "name": "X-CSRFToken"}
    for path, item in schema["paths"].items():
        for method, operation in item.items():
            responses = operation["responses"]
            for status in ("400", "404", "405", "422", "500"):
                content = responses[status]["content"]["application/json"]["schema"]
                assert content == {"$ref": "#/components/schemas/ErrorOut"}, (path, method, status)
            if path.startswith("/api/console/"):
                expected: list[dict[str, list[str]]] = (
                    [{"SessionAuth": [], "CSRFToken": []}]
                    if method in ("post", "put", "patch", "delete")  # unsafe methods need the CSRF header
                    else [{"SessionAuth": []}]
                )
                assert operation["security"] == expected, (path, method)
            body = operation.get("requestBody")
            if body:
                ref = body["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
                component = schema["components"]["schemas"][ref]
                assert component["type"] == "object" and component["additionalProperties"] is False, ref
    text = schema["components"]["schemas"]["MessageIn"]["properties"]["text"]
    assert text["maxLength"] == django_settings.MESSAGE_MAX_LENGTH and text["pattern"]
