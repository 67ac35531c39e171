"""The OpenAPI schema tells the truth: schemathesis runs every check over both APIs, on PostgreSQL.

Requests go through Django's real WSGI handler (every middleware), authenticated as a real visitor
(bearer token) and a real agent (session cookie + CSRF header), so refusals by the edge, the auth,
the schemas and the services are all exercised. "All checks" means: no 5xx, every status and body as
declared, schema-valid input accepted, invalid input refused, and no operation that works without
its credentials. The stateful run follows the schema's links (handoff list → claim → reply → resolve,
events → the widget's actions → events, …).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import hypothesis
import pytest
import schemathesis
from django.conf import settings as django_settings
from django.core.handlers.wsgi import WSGIHandler
from django.middleware.csrf import _get_new_csrf_string
from django.test import Client
from schemathesis.config import SchemathesisConfig

from chatbots.models import Chatbot
from conversations.models import Conversation
from pivra.api import api
from pivra.widget import operations
from tests.factories import make_personas
from tests.handoff_helpers import enable_handoff, new_visitor, request, say

pytestmark = pytest.mark.django_db(transaction=True)  # the WSGI handler commits like production

# Bounded so the whole module takes a minute or two on a shared 2-core runner.
MAX_EXAMPLES = 50
STATEFUL_STEPS = 12
STATEFUL_EXAMPLES = 40

CONFIG = """
[generation]
max-examples = {max_examples}
mode = "all"
# Each test starts from a fresh database: an example replayed from an earlier run means nothing.
database = "none"

[checks]
# Every check is on. Schema-valid input may still meet state and budget refusals no schema can
# express: 404 (a random conversation id), 409 (a resend with other text, a handoff already
# claimed), 429; and 401 / 403 where the credentials were left out on purpose.
positive_data_acceptance.expected-statuses = ["2xx", "401", "403", "404", "409", "429"]
# Schemathesis' defaults plus 413: a text over its maxLength keeps the code the widget handles
# (message_too_long, 413 Content Too Large).
negative_data_rejection.expected-statuses = [
    "400", "401", "403", "404", "405", "406", "409", "413", "415", "422", "428", "429",
]

[[operations]]
# Whether a number is a mobile number of a real numbering plan only the server can tell: the schema
# constrains the characters and the length and says so; a wrong number is 400 invalid_phone.
include-operation-id = "pivra_widget_api_lead"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409", "429"]
"""


@dataclass(frozen=True)
class Credentials:
    token: str
    sessionid: str
    csrftoken: str
    chatbot: Chatbot


@pytest.fixture
def credentials(transactional_db: None, settings: Any) -> Credentials:
    """A visitor token and a logged-in agent of the same workspace, with handoffs waiting for them."""
    settings.RATE_VISITOR_PER_MINUTE = 100_000  # the budgets are tested elsewhere; here they hide paths
    settings.RATE_IP_PER_MINUTE = 100_000
    personas = make_personas()
    bot = enable_handoff(personas.chatbot)
    _waiting_handoffs(bot)
    token = operations.widget_session(public_key=bot.public_key, token=None, locale="en-GB")["token"]
    client = Client()
    client.force_login(personas.owner)
    sessionid = client.cookies[django_settings.SESSION_COOKIE_NAME].value
    return Credentials(token=token, sessionid=sessionid, csrftoken=_get_new_csrf_string(), chatbot=bot)


def _waiting_handoffs(bot: Chatbot) -> None:
    for text in ("Where is my order?", "I need a refund", "Speak to someone please"):
        visitor, conversation = new_visitor(bot)
        say(visitor, conversation, text)
        request(visitor, conversation)


class _Current:
    """The credentials of the running test: the schema (and its auth) is built once, at import."""

    credentials: Credentials | None = None


@pytest.fixture(autouse=True)
def _current_credentials(credentials: Credentials) -> Iterator[None]:
    _Current.credentials = credentials
    yield
    _Current.credentials = None


def _load() -> Any:
    """The schema as the app serves it, sent through Django's WSGI handler, authenticated: widget
    operations with the bearer token; console ones with the session cookie and the CSRF header."""
    loaded = schemathesis.openapi.from_dict(
        api.get_openapi_schema(), config=SchemathesisConfig.from_str(CONFIG.format(max_examples=MAX_EXAMPLES))
    )
    loaded.app = WSGIHandler()

    @loaded.auth(refresh_interval=None)  # no caching: each test has its own credentials
    class Auth:
        def get(self, case: Any, ctx: Any) -> Credentials | None:
            return _Current.credentials

        def set(self, case: Any, data: Credentials, ctx: Any) -> None:
            _apply(case, data)

    return loaded


def _apply(case: Any, credentials: Credentials) -> None:
    if case.operation.path.startswith("/api/widget/"):
        case.headers = {**(case.headers or {}), "Authorization": f"Bearer {credentials.token}"}
    else:
        case.cookies = {**(case.cookies or {}), "sessionid": credentials.sessionid, "csrftoken": credentials.csrftoken}
        case.headers = {**(case.headers or {}), "X-CSRFToken": credentials.csrftoken}


def _authenticate(case: Any) -> None:
    """The coverage phase builds its cases at collection, before any test has credentials: they get
    them here — unless the case is about missing or wrong credentials."""
    credentials = _Current.credentials
    if credentials is None or case._has_explicit_auth or case.operation.schema.is_security_param_negated(case):
        return
    _apply(case, credentials)
    case._has_explicit_auth = True  # so the ignored_auth check probes this case without them


schema = _load()


@schema.parametrize()
@hypothesis.settings(deadline=None, suppress_health_check=list(hypothesis.HealthCheck))
def test_every_operation_keeps_its_schema(case: Any) -> None:
    _authenticate(case)
    case.call_and_validate()


class Workflow(schema.as_state_machine()):  # type: ignore[misc]
    def setup(self) -> None:
        """Every scenario starts from the same state (three waiting handoffs, a visitor without a
        conversation): the links draw from the responses, and Hypothesis requires that the same
        choices meet the same shapes of data."""
        credentials = _Current.credentials
        assert credentials is not None
        Conversation.objects.filter(chatbot=credentials.chatbot).delete()
        _waiting_handoffs(credentials.chatbot)


def test_the_operations_chained_by_their_links_keep_the_schema() -> None:
    Workflow.run(
        settings=hypothesis.settings(
            max_examples=STATEFUL_EXAMPLES,
            stateful_step_count=STATEFUL_STEPS,
            deadline=None,
            database=None,
            suppress_health_check=list(hypothesis.HealthCheck),
            phases=[hypothesis.Phase.generate],
        )
    )
