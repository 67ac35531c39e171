"""The AI responders: BM25 retrieval over the knowledge base, and streaming from an OpenAI-compatible server."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

from chatbots.models import Chatbot, KnowledgeEntry
from chatbots.responders import (
    ChatTurn,
    KnowledgeBaseResponder,
    OpenAICompatibleResponder,
    ResponderError,
    knowledge_search,
    responder_for,
)
from chatbots.responders import knowledge as knowledge_module
from chatbots.responders.knowledge import tokenize
from chatbots.services import knowledge_entry_save
from tests.factories import make_chatbot, make_workspace

API_KEY = "sk-test-secret-123"
SHIPPING_ANSWER = "Standard delivery is $4.99; shipping is free on orders over $50."

FAQ = [
    ("How much does shipping cost?", SHIPPING_ANSWER),
    ("What is your return policy?", "You can return any item within 30 days for a full refund."),
    ("When are you open?", "Our store is open Monday to Friday, 9am to 6pm."),
    ("Do you ship internationally?", "Yes, we ship to more than 40 countries worldwide."),
    ("How can I reset my password?", "Click 'Forgot password' on the login page and follow the email."),
    ("Do you offer gift cards?", "Yes, gift cards from $10 to $500 are available in the shop."),
]


@pytest.fixture(autouse=True)
def _loopback_endpoints_allowed(settings: Any) -> None:
    # The fake AI endpoints listen on 127.0.0.1: a tenant URL there is refused unless private is allowed.
    settings.OUTBOUND_ALLOW_PRIVATE = True


@pytest.fixture(autouse=True)
def _fresh_index_cache() -> Iterator[None]:
    knowledge_module.clear_cache()
    yield
    knowledge_module.clear_cache()


def add_entries(chatbot: Chatbot, entries: list[tuple[str, str]]) -> list[KnowledgeEntry]:
    return [knowledge_entry_save(chatbot=chatbot, question=q, answer=a) for q, a in entries]


def answer(chatbot: Chatbot, question: str) -> list[str]:
    return list(KnowledgeBaseResponder(chatbot).stream(question=question, history=[]))


# --- BM25 knowledge base ------------------------------------------------------------------------------------------


def test_tokenize_folds_case_accents_punctuation_and_stopwords() -> None:
    assert tokenize("Où est le CAFÉ, s'il-vous-plaît?!") == ["ou", "est", "le", "cafe", "il", "vous", "plait"]
    assert tokenize("What does it cost?") == ["cost"]
    assert tokenize("Shipping costs") == tokenize("shipping cost")


@pytest.mark.django_db
def test_differently_phrased_question_finds_the_right_entry_first() -> None:
    chatbot = make_chatbot(make_workspace())
    add_entries(chatbot, FAQ)

    results = knowledge_search(chatbot=chatbot, query="what does delivery cost, shipping price?")

    assert results[0].answer == SHIPPING_ANSWER
    assert results[0].question == "How much does shipping cost?"
    assert 1 <= len(results) <= 3
    assert all(r.score > 0 for r in results)
    assert [r.score for r in results] == sorted((r.score for r in results), reverse=True)
    assert answer(chatbot, "what does delivery cost, shipping price?") == [SHIPPING_ANSWER]


@pytest.mark.django_db
def test_limit_caps_the_number_of_results() -> None:
    chatbot = make_chatbot(make_workspace())
    add_entries(chatbot, FAQ)

    # "yes" is in two answers and "ship"/"shipping" in two entries: more than one match exists.
    assert len(knowledge_search(chatbot=chatbot, query="shipping ship yes", limit=10)) >= 3
    assert len(knowledge_search(chatbot=chatbot, query="shipping ship yes", limit=1)) == 1
    assert knowledge_search(chatbot=chatbot, query="shipping", limit=0) == []


@pytest.mark.django_db
def test_accents_and_case_do_not_matter() -> None:
    chatbot = make_chatbot(make_workspace())
    add_entries(chatbot, [*FAQ, ("Is crème brûlée on the menu?", "Yes, every Friday.")])

    assert answer(chatbot, "CREME BRULEE") == ["Yes, every Friday."]
    assert answer(chatbot, "crème Brûlée?") == ["Yes, every Friday."]

    add_entries(chatbot, [("Can I send my resume?", "Send it to jobs@example.com.")])
    assert answer(chatbot, "Where do I send my RÉSUMÉ") == ["Send it to jobs@example.com."]


@pytest.mark.django_db
def test_unrelated_question_gets_the_fallback_message() -> None:
    chatbot = make_chatbot(make_workspace(), fallback_message="No idea, sorry!")
    add_entries(chatbot, FAQ)

    assert knowledge_search(chatbot=chatbot, query="Who won the football world cup?") == []
    assert answer(chatbot, "Who won the football world cup?") == ["No idea, sorry!"]
    # A question made only of stopwords matches nothing either.
    assert answer(chatbot, "what is it?") == ["No idea, sorry!"]


@pytest.mark.django_db
def test_chatbot_without_entries_gets_the_fallback_message() -> None:
    chatbot = make_chatbot(make_workspace(), fallback_message="Nothing here yet.")

    assert knowledge_search(chatbot=chatbot, query="shipping cost") == []
    assert answer(chatbot, "shipping cost") == ["Nothing here yet."]


@pytest.mark.django_db
def test_inactive_entries_are_never_returned() -> None:
    chatbot = make_chatbot(make_workspace())
    add_entries(chatbot, FAQ)
    # This one would match the query best of all, were it active.
    knowledge_entry_save(
        chatbot=chatbot, question="Shipping price and delivery cost", answer="OLD PRICE LIST", is_active=False
    )

    results = knowledge_search(chatbot=chatbot, query="delivery cost, shipping price", limit=10)

    assert results
    assert "OLD PRICE LIST" not in [r.answer for r in results]
    assert answer(chatbot, "delivery cost, shipping price") == [SHIPPING_ANSWER]


@pytest.mark.django_db
def test_editing_an_entry_changes_the_answer() -> None:
    chatbot = make_chatbot(make_workspace(), fallback_message="Fallback.")
    entries = add_entries(chatbot, FAQ)
    shipping = entries[0]
    assert answer(chatbot, "shipping cost") == [SHIPPING_ANSWER]

    knowledge_entry_save(chatbot=chatbot, entry=shipping, question=shipping.question, answer="Shipping is now $2.")
    assert answer(chatbot, "shipping cost") == ["Shipping is now $2."]

    knowledge_entry_save(
        chatbot=chatbot, entry=shipping, question=shipping.question, answer="Shipping is now $2.", is_active=False
    )
    assert answer(chatbot, "how much does shipping cost") == ["Fallback."]

    knowledge_entry_save(chatbot=chatbot, entry=shipping, question=shipping.question, answer="Back at $3.")
    assert answer(chatbot, "shipping cost") == ["Back at $3."]

    shipping.delete()
    add_entries(chatbot, [("Shipping costs", "A brand new entry.")])
    assert answer(chatbot, "shipping cost") == ["A brand new entry."]


@pytest.mark.django_db
def test_index_is_cached_until_entries_change() -> None:
    chatbot = make_chatbot(make_workspace())
    add_entries(chatbot, FAQ)

    first = knowledge_module._index_for(chatbot)
    assert knowledge_module._index_for(chatbot) is first

    add_entries(chatbot, [("Parking", "Free parking behind the store.")])
    assert knowledge_module._index_for(chatbot) is not first


@pytest.mark.django_db
def test_index_cache_is_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(knowledge_module, "CACHE_SIZE", 2)
    workspace = make_workspace()
    bots = [make_chatbot(workspace, f"Bot {n}") for n in range(3)]
    for bot in bots:
        add_entries(bot, FAQ[:2])
        knowledge_search(chatbot=bot, query="shipping")

    assert list(knowledge_module._cache) == [bots[1].pk, bots[2].pk]


@pytest.mark.django_db
def test_another_chatbots_entries_are_never_used() -> None:
    ours = make_chatbot(make_workspace("Ours"), fallback_message="Ours: no idea.")
    add_entries(ours, [("When are you open?", "Monday to Friday.")])
    same_workspace_bot = make_chatbot(ours.workspace, "Sibling")
    theirs = make_chatbot(make_workspace("Theirs"))
    add_entries(same_workspace_bot, [("How much does shipping cost?", "Sibling's shipping answer.")])
    add_entries(theirs, [("How much does shipping cost?", "Their shipping answer.")])

    assert knowledge_search(chatbot=ours, query="shipping cost") == []
    assert answer(ours, "shipping cost") == ["Ours: no idea."]
    assert answer(theirs, "shipping cost") == ["Their shipping answer."]


# --- OpenAI-compatible server ---------------------------------------------------------------------------------------


class FakeLLMServer(ThreadingHTTPServer):
    """A real HTTP server speaking (or deliberately botching) the chat-completions streaming API."""

    daemon_threads = True

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.mode = "stream"
        self.chunks = ["Hel", "lo", ", wor", "ld!"]
        self.requests: list[dict[str, Any]] = []
        # Set by the test once it holds the first chunk: the rest is only sent then, which proves the client
        # yields chunks as they arrive rather than after the whole response.
        self.gate: threading.Event | None = None
        self.release = threading.Event()  # ends the "slow" handler at teardown

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}/v1"


class _Handler(BaseHTTPRequestHandler):
    server: FakeLLMServer

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        self.server.requests.append({"path": self.path, "headers": dict(self.headers), "json": json.loads(body)})
        getattr(self, f"_mode_{self.server.mode}")()

    def _start_stream(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream")
        self.end_headers()

    def _send(self, raw: str) -> None:
        self.wfile.write(raw.encode())
        self.wfile.flush()

    def _event(self, payload: Any) -> None:
        self._send(f"data: {json.dumps(payload)}\n\n")

    def _mode_stream(self) -> None:
        self._start_stream()
        self._event({"choices": [{"delta": {"role": "assistant"}}]})  # role-only chunks carry no text
        for n, chunk in enumerate(self.server.chunks):
            self._event({"choices": [{"delta": {"content": chunk}}]})
            if n == 0 and self.server.gate is not None and not self.server.gate.wait(10):
                return  # the client never took the first chunk: end without the rest, so the test fails
        self._event({"choices": [], "usage": {"total_tokens": 7}})  # usage chunks have no choices
        self._send("data: [DONE]\n\n")

    def _mode_status_500(self) -> None:
        body = f"upstream exploded while checking key {API_KEY}".encode()
        self.send_response(500)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _mode_slow(self) -> None:
        self.server.release.wait(30)

    def _mode_malformed(self) -> None:
        self._start_stream()
        self._send('data: {"choices": [{"delta": \n\n')
        self._send("data: [DONE]\n\n")

    def _mode_truncated(self) -> None:
        self._start_stream()
        self._send(": keep-alive\n\n")

    def _mode_error_event(self) -> None:
        self._start_stream()
        self._event({"error": {"message": "model overloaded"}})

    def _mode_json(self) -> None:
        body = json.dumps({"choices": [{"message": {"role": "assistant", "content": "Whole reply."}}]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


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


def llm_chatbot(server: FakeLLMServer, **fields: Any) -> Chatbot:
    fields = {
        "ai_provider": Chatbot.Provider.OPENAI,
        "llm_base_url": server.url,
        "llm_api_key": API_KEY,
        "llm_model": "test-model",
        **fields,
    }
    return make_chatbot(make_workspace(), "Shopbot", **fields)


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
