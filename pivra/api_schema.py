"""What the OpenAPI schema promises, shared by both routers: field constraints that match the
server's own rules, the ``{code, detail}`` error shape on every status, and the parts of the schema
django-ninja cannot derive (the CSRF header as a security scheme, links between operations).

The constraints are enforced by the request schemas themselves (a violation is 422
``invalid_input``), so a request the schema allows is one the server's input checks accept too.
"""

from __future__ import annotations

from typing import Any

from django.conf import settings
from ninja import Schema
from pydantic import ConfigDict, Field

# No NUL: PostgreSQL cannot store it, and the edge (pivra.middleware) refuses it with 400 anywhere
# in a request. (So is a lone surrogate, which is not Unicode text at all, so no pattern names it.)
NO_NUL = r"^[^\x00]*$"
# Text the server keeps after stripping whitespace (Python's str.strip(), hence the python-re engine
# below): at least one character that is not whitespace.
VISIBLE_TEXT = r"^[^\x00]*[^\s\x00][^\x00]*$"
# 1 to 64 visible ASCII characters (no spaces, no control characters): what the widget and the console
# send (UUIDs), and a subset of what the services accept over the socket.
CLIENT_ID = r"^[!-~]{1,64}$"
CLIENT_ID_LENGTH = 64
# A conversation's public id: a UUID in its canonical form.
_UUID = r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}"
UUID = rf"^{_UUID}$"
UUID_OR_EMPTY = rf"^({_UUID})?$"
# A BCP 47 language tag such as en-GB (what navigator.language gives), or empty.
LOCALE = r"^[A-Za-z0-9_-]{0,35}$"
# Characters a phone number is typed with: digits (any script: the server reads them all), spaces,
# + ( ) . - /. Whether it is a mobile number of a real numbering plan only the server can tell
# (400 invalid_phone).
PHONE = r"^\s*\+?[\d\s().\-/]*\d[\d\s().\-/]*$"
PUBLIC_KEY = r"^[A-Za-z0-9_-]{1,60}$"
# Event numbers are 32-bit columns.
MAX_SEQ = 2_147_483_647


def message_max_length() -> int:
    return int(settings.MESSAGE_MAX_LENGTH)


class ApiSchema(Schema):
    """Request bodies: no fields besides the declared ones (``additionalProperties: false``), and the
    patterns above mean what Python's ``re`` means (as in the server's own checks)."""

    model_config = ConfigDict(regex_engine="python-re", extra="forbid")


def client_id_field(*, required: bool) -> Any:
    if required:
        return Field(min_length=1, max_length=CLIENT_ID_LENGTH, pattern=CLIENT_ID)
    return Field(default=None, min_length=1, max_length=CLIENT_ID_LENGTH, pattern=CLIENT_ID)


def text_field() -> Any:
    return Field(
        min_length=1,
        max_length=message_max_length(),
        pattern=VISIBLE_TEXT,
        description="The message; at least one character that is not whitespace.",
    )


class ErrorOut(Schema):
    code: str = Field(description="A stable machine code, e.g. invalid_input, not_found, client_id_reused.")
    detail: str = Field(description="A readable explanation.")


# Every operation can answer these: refusals of the request's shape or credentials, a wrong method
# (405), and an unexpected failure (500, logged).
_COMMON = (400, 401, 403, 404, 405, 409, 413, 422, 500)


def error_responses(*extra: int) -> dict[int, type[Schema]]:
    return dict.fromkeys(sorted({*_COMMON, *extra}), ErrorOut)


CSRF_SCHEME = "CSRFToken"
SESSION_SCHEME = "SessionAuth"
_UNSAFE_METHODS = ("post", "put", "patch", "delete")


def document(schema: dict[str, Any]) -> dict[str, Any]:
    """Complete ninja's schema: the CSRF header every unsafe console call needs (together with the
    session cookie), and the links that feed one operation's output into the next."""
    components = schema.setdefault("components", {})
    components.setdefault("securitySchemes", {})[CSRF_SCHEME] = {
        "type": "apiKey",
        "in": "header",
        "name": "X-CSRFToken",
        "description": "The csrftoken cookie's value. Required with the session cookie on every console "
        "POST; a missing or wrong token is 403 csrf_failed.",
    }
    for path_item in schema.get("paths", {}).values():
        for method, operation in path_item.items():
            if method not in _UNSAFE_METHODS:
                continue
            security = operation.get("security") or []
            if any(SESSION_SCHEME in requirement for requirement in security):
                operation["security"] = [{SESSION_SCHEME: [], CSRF_SCHEME: []}]
    _add_links(schema)
    return schema


def _link(operation_id: str, description: str, **parameters: str) -> dict[str, Any]:
    return {"operationId": operation_id, "parameters": parameters, "description": description}


# (operationId, status) → the links of that response. Expressions: OpenAPI runtime expressions.
_LINKS: dict[tuple[str, str], dict[str, dict[str, Any]]] = {
    ("pivra_widget_api_session", "200"): {
        "Events": _link(
            "pivra_widget_api_events",
            "The new session's conversation",
            conversation="$response.body#/state/conversation",
            after_seq="$response.body#/state/last_seq",
        ),
    },
    ("pivra_widget_api_messages", "200"): {
        "EventsAfter": _link(
            "pivra_widget_api_events",
            "What happened after the message (AI reply, handoff)",
            after_seq="$response.body#/seq",
        ),
    },
    **{
        (f"pivra_widget_api_{name}", "200"): {
            "Events": _link(
                "pivra_widget_api_events",
                "The conversation the action left the visitor in",
                conversation="$response.body#/state/conversation",
            ),
        }
        for name in ("handoff", "offer", "lead", "continue_with_ai", "new_conversation")
    },
    # The widget's actions take their target from the token, not from the response: these links say
    # "after reading the conversation, act in it" (and make the actions reachable in a stateful run).
    ("pivra_widget_api_events", "200"): {
        name: {"operationId": f"pivra_widget_api_{name}", "description": "Act in the conversation just read"}
        for name in ("messages", "handoff", "offer", "lead", "continue_with_ai", "new_conversation")
    },
    ("handoff_api_list_handoffs", "200"): {
        name: _link(
            f"handoff_api_{name}", "The first handoff of the list", conversation_id="$response.body#/0/conversation"
        )
        for name in ("get_conversation", "claim", "resolve")
    },
    **{
        (f"handoff_api_{source}", "200"): {
            name: _link(f"handoff_api_{name}", "The same conversation", conversation_id="$response.body#/conversation")
            for name in ("get_conversation", "claim", "reply", "resolve")
        }
        for source in ("claim", "get_conversation")
    },
    ("handoff_api_reply", "201"): {
        name: _link(
            f"handoff_api_{name}", "The conversation replied to", conversation_id="$request.path.conversation_id"
        )
        for name in ("get_conversation", "resolve")
    },
}


def _add_links(schema: dict[str, Any]) -> None:
    for path_item in schema.get("paths", {}).values():
        for operation in path_item.values():
            if not isinstance(operation, dict):
                continue
            for status, response in operation.get("responses", {}).items():
                links = _LINKS.get((operation.get("operationId", ""), str(status)))
                if links:
                    response["links"] = links
