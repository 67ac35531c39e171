"""The OpenAI-compatible responder streaming from a real (fake) server on loopback, and choosing a
responder by provider."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from typing import Any

import pytest

from chatbots.models import Chatbot
from chatbots.responders import (
    ChatTurn,
    KnowledgeBaseResponder,
    OpenAICompatibleResponder,
    ResponderError,
    responder_for,
)
from chatbots.responders import knowledge as knowledge_module
from tests.factories import make_chatbot, make_workspace
from tests.responder_helpers import API_KEY, FAQ, SHIPPING_ANSWER, FakeLLMServer, add_entries, llm_chatbot


@pytest.fixture(autouse=True)
def _loopback_endpoints_allowed(settings: Any) -> None:
    # The fake AI endpoints listen on 127.0.0.1: a tenant URL there is refused unless private is allowed.
    settings.OUTBOUND_ALLOW_PRIVATE = True


@pytest.fixture(autouse=True)
def _fresh_index_cache() -> Iterator[None]:
    knowledge_module.clear_cache()
    yield
    knowledge_module.clear_cache()


@pytest.fixture
def llm_server() -> Iterator[FakeLLMServer]:
    server = FakeLLMServer()
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    yield server
    server.release.set()
    if server.gate is not None:
        server.gate.set()
    server.shutdown()
    server.server_close()
    thread.join(5)


@pytest.mark.django_db
def test_streams_chunks_in_order_as_they_arrive(llm_server: FakeLLMServer) -> None:
    chatbot = llm_chatbot(llm_server)
    add_entries(chatbot, FAQ)
    llm_server.gate = threading.Event()

    stream = responder_for(chatbot).stream(question="What does delivery cost?", history=[])
    first = next(stream)
    llm_server.gate.set()
    rest = list(stream)

    assert [first, *rest] == ["Hel", "lo", ", wor", "ld!"]
    assert "".join([first, *rest]) == "Hello, world!"


@pytest.mark.django_db
def test_request_carries_key_model_stream_flag_and_knowledge_context(llm_server: FakeLLMServer) -> None:
    chatbot = llm_chatbot(llm_server)
    add_entries(chatbot, FAQ)

    list(responder_for(chatbot).stream(question="What does delivery cost, shipping price?", history=[]))

    [request] = llm_server.requests
    assert request["path"] == "/v1/chat/completions"
    assert request["headers"]["Authorization"] == f"Bearer {API_KEY}"
    body = request["json"]
    assert body["model"] == "test-model"
    assert body["stream"] is True
    system = body["messages"][0]
    assert system["role"] == "system"
    assert "Shopbot" in system["content"]  # the default prompt names the bot
    assert "Answer using these facts when relevant:" in system["content"]
    assert SHIPPING_ANSWER in system["content"]
    assert "gift cards" not in system["content"]  # only the matching entries, not the whole knowledge base
    assert body["messages"][-1] == {"role": "user", "content": "What does delivery cost, shipping price?"}


@pytest.mark.django_db
def test_history_roles_and_question_not_duplicated(llm_server: FakeLLMServer) -> None:
    chatbot = llm_chatbot(llm_server, system_prompt="You are a pirate.")
    history = [
        ChatTurn("visitor", "Hi"),
        ChatTurn("ai", "Hello! How can I help?"),
        ChatTurn("agent", "I'm Sam from the team."),
        ChatTurn("visitor", "Where is my order?"),
    ]

    list(responder_for(chatbot).stream(question="Where is my order?", history=history))

    messages = llm_server.requests[0]["json"]["messages"]
    assert messages == [
        {"role": "system", "content": "You are a pirate."},  # no entries match: no facts section
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "assistant", "content": "(Team member) I'm Sam from the team."},
        {"role": "user", "content": "Where is my order?"},
    ]


@pytest.mark.django_db
def test_question_is_appended_after_history(llm_server: FakeLLMServer) -> None:
    chatbot = llm_chatbot(llm_server)

    list(responder_for(chatbot).stream(question="And refunds?", history=[ChatTurn("visitor", "Hi")]))

    messages = llm_server.requests[0]["json"]["messages"]
    assert messages[1:] == [{"role": "user", "content": "Hi"}, {"role": "user", "content": "And refunds?"}]


@pytest.mark.django_db
def test_endpoint_key_and_model_fall_back_to_settings(llm_server: FakeLLMServer, settings: Any) -> None:
    settings.LLM_BASE_URL = llm_server.url
    settings.LLM_API_KEY = "sk-from-settings"
    settings.LLM_MODEL = "settings-model"
    chatbot = make_chatbot(make_workspace(), ai_provider=Chatbot.Provider.OPENAI)

    assert "".join(responder_for(chatbot).stream(question="Hi", history=[])) == "Hello, world!"

    request = llm_server.requests[0]
    assert request["headers"]["Authorization"] == "Bearer sk-from-settings"
    assert request["json"]["model"] == "settings-model"


@pytest.mark.django_db
def test_no_authorization_header_without_a_key(llm_server: FakeLLMServer, settings: Any) -> None:
    settings.LLM_API_KEY = ""
    chatbot = llm_chatbot(llm_server, llm_api_key="")

    list(responder_for(chatbot).stream(question="Hi", history=[]))

    assert "Authorization" not in llm_server.requests[0]["headers"]


@pytest.mark.django_db
def test_non_streaming_json_reply_is_accepted(llm_server: FakeLLMServer) -> None:
    llm_server.mode = "json"
    chatbot = llm_chatbot(llm_server)

    assert list(responder_for(chatbot).stream(question="Hi", history=[])) == ["Whole reply."]


@pytest.mark.django_db
def test_http_500_raises_with_status_and_excerpt_but_no_key(llm_server: FakeLLMServer) -> None:
    llm_server.mode = "status_500"
    chatbot = llm_chatbot(llm_server)

    with pytest.raises(ResponderError) as caught:
        list(responder_for(chatbot).stream(question="Hi", history=[]))

    message = str(caught.value)
    assert "500" in message
    assert "upstream exploded" in message
    assert API_KEY not in message


@pytest.mark.django_db
def test_timeout_raises(llm_server: FakeLLMServer, settings: Any) -> None:
    settings.LLM_TIMEOUT = 0.5
    llm_server.mode = "slow"
    chatbot = llm_chatbot(llm_server)

    with pytest.raises(ResponderError, match="timed out"):
        list(responder_for(chatbot).stream(question="Hi", history=[]))
    assert len(llm_server.requests) == 1  # it did reach the server, which then stalled


@pytest.mark.django_db
def test_malformed_json_raises(llm_server: FakeLLMServer) -> None:
    llm_server.mode = "malformed"
    chatbot = llm_chatbot(llm_server)

    with pytest.raises(ResponderError, match="malformed JSON"):
        list(responder_for(chatbot).stream(question="Hi", history=[]))


@pytest.mark.django_db
def test_stream_without_done_or_content_raises(llm_server: FakeLLMServer) -> None:
    llm_server.mode = "truncated"
    chatbot = llm_chatbot(llm_server)

    with pytest.raises(ResponderError, match=r"without \[DONE\]"):
        list(responder_for(chatbot).stream(question="Hi", history=[]))


@pytest.mark.django_db
def test_error_event_in_stream_raises(llm_server: FakeLLMServer) -> None:
    llm_server.mode = "error_event"
    chatbot = llm_chatbot(llm_server)

    with pytest.raises(ResponderError, match="model overloaded"):
        list(responder_for(chatbot).stream(question="Hi", history=[]))


@pytest.mark.django_db
def test_connection_refused_raises() -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    # Nothing listens on the port once the socket is closed.
    chatbot = make_chatbot(
        make_workspace(),
        ai_provider=Chatbot.Provider.OPENAI,
        llm_base_url=f"http://127.0.0.1:{port}/v1",
        llm_api_key=API_KEY,
    )

    with pytest.raises(ResponderError, match="ConnectError") as caught:
        list(responder_for(chatbot).stream(question="Hi", history=[]))
    assert API_KEY not in str(caught.value)


@pytest.mark.django_db
def test_missing_endpoint_raises(settings: Any) -> None:
    settings.LLM_BASE_URL = ""
    chatbot = make_chatbot(make_workspace(), ai_provider=Chatbot.Provider.OPENAI)

    with pytest.raises(ResponderError, match="No LLM endpoint"):
        list(responder_for(chatbot).stream(question="Hi", history=[]))


# --- Choosing a responder -------------------------------------------------------------------------------------------


@pytest.mark.django_db
def test_responder_for_picks_by_provider() -> None:
    workspace = make_workspace()
    llm_bot = make_chatbot(workspace, "LLM", ai_provider=Chatbot.Provider.OPENAI)
    kb_bot = make_chatbot(workspace, "KB", ai_provider=Chatbot.Provider.KNOWLEDGE_BASE)

    assert isinstance(responder_for(llm_bot), OpenAICompatibleResponder)
    assert isinstance(responder_for(kb_bot), KnowledgeBaseResponder)
