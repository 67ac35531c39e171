"""A responder that streams replies from any OpenAI-compatible ``/chat/completions`` endpoint."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator, Sequence
from typing import Any
from urllib.parse import urlsplit

import httpx
from django.conf import settings

from chatbots.models import Chatbot
from chatbots.responders.base import ChatTurn, ResponderError
from chatbots.responders.knowledge import knowledge_search
from pivra.crypto import secret_unreadable
from pivra.outbound import NOT_ALLOWED, DestinationNotAllowed, ResolutionFailed, outbound_allow_private, pinned_client

logger = logging.getLogger(__name__)

CONTEXT_ENTRIES = 3
# Older turns add cost and latency but rarely change the answer; the question itself is always sent.
MAX_HISTORY_TURNS = 20
_ERROR_EXCERPT_CHARS = 200
# A tenant's endpoint is untrusted: these bound what one reply may make a shared worker hold.
MAX_BODY_BYTES = 1024 * 1024  # the whole response, JSON or event stream
MAX_LINE_BYTES = 64 * 1024  # one event-stream line (a real delta line is a few hundred bytes)
# The reply text: a generous multiple of what a visitor may send, and never below 32 KiB.
MAX_REPLY_CHARS = max(32 * 1024, settings.MESSAGE_MAX_LENGTH * 4)
_ROLES = {"visitor": "user", "ai": "assistant", "agent": "assistant"}


def _default_system_prompt(chatbot: Chatbot) -> str:
    return (
        f"You are {chatbot.name}, a friendly support assistant on this website. Answer briefly and accurately. "
        "If you do not know the answer, say so and offer to connect the visitor with a human."
    )


def build_messages(*, chatbot: Chatbot, question: str, history: Sequence[ChatTurn]) -> list[dict[str, str]]:
    """The chat-completions ``messages``: system prompt with knowledge context, history, then the question."""
    system = chatbot.system_prompt.strip() or _default_system_prompt(chatbot)
    facts = knowledge_search(chatbot=chatbot, query=question, limit=CONTEXT_ENTRIES)
    if facts:
        lines = "\n".join(f"- Q: {fact.question}\n  A: {fact.answer}" for fact in facts)
        # One system message, not several: some models' chat templates accept only one, at the start.
        system = f"{system}\n\nAnswer using these facts when relevant:\n{lines}"
    messages = [{"role": "system", "content": system}]
    for turn in list(history)[-MAX_HISTORY_TURNS:]:
        if not turn.text.strip():
            continue
        text = f"(Team member) {turn.text}" if turn.role == "agent" else turn.text
        messages.append({"role": _ROLES[turn.role], "content": text})
    # Callers may already have stored the visitor's question as the last turn; sending it twice confuses models.
    last = messages[-1]
    if not (len(messages) > 1 and last["role"] == "user" and last["content"].strip() == question.strip()):
        messages.append({"role": "user", "content": question})
    return messages


def _same_url(a: str, b: str) -> bool:
    return a.strip().rstrip("/") == b.strip().rstrip("/")


class OpenAICompatibleResponder:
    """Streams tokens from the chatbot's LLM endpoint, falling back to the PIVRA_LLM_* settings.

    Two kinds of endpoint: the platform's (PIVRA_LLM_BASE_URL, chosen by the operator, so it may be
    private or loopback) and a tenant's own. The platform key goes only to the platform endpoint; a
    tenant URL gets the tenant's key or none, and is vetted like a webhook URL on every request.
    Both go through pivra.outbound: address pinned, no environment proxies, one overall deadline.
    """

    def __init__(self, chatbot: Chatbot) -> None:
        self.chatbot = chatbot
        own_url = chatbot.llm_base_url.strip()
        platform_url = settings.LLM_BASE_URL.strip()
        self.on_platform = not own_url or (bool(platform_url) and _same_url(own_url, platform_url))
        self.base_url: str = platform_url if self.on_platform else own_url
        # Stored under a key no longer configured: fail the reply (stream) rather than send no key or
        # fall back to the platform key.
        self.key_unreadable = secret_unreadable(chatbot.llm_api_key)
        own_key = chatbot.llm_api_key.strip()
        self.api_key: str = (own_key or settings.LLM_API_KEY.strip()) if self.on_platform else own_key
        self.model: str = (chatbot.llm_model or settings.LLM_MODEL).strip()

    @property
    def _host(self) -> str:
        # Only the host goes into errors and logs: a base URL may carry credentials in its userinfo or query.
        return urlsplit(self.base_url).hostname or "?"

    def _redact(self, text: str) -> str:
        # Some providers echo (part of) a rejected key in their error body.
        return text.replace(self.api_key, "[redacted]") if self.api_key else text

    def stream(self, *, question: str, history: Sequence[ChatTurn]) -> Iterator[str]:
        if self.key_unreadable:
            raise ResponderError(
                f"Chatbot {self.chatbot.pk}: the saved LLM API key cannot be decrypted with any configured key "
                "(PIVRA_ENCRYPTION_KEYS / SECRET_KEY changed); restore the old key and run rotate_secrets, "
                "or save a new API key."
            )
        if not self.base_url:
            raise ResponderError("No LLM endpoint configured (chatbot llm_base_url and PIVRA_LLM_BASE_URL are empty).")
        url = self.base_url.rstrip("/") + "/chat/completions"
        headers = {"Accept": "text/event-stream"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        payload = {
            "model": self.model,
            "messages": build_messages(chatbot=self.chatbot, question=question, history=history),
            "stream": True,
        }
        seconds = float(settings.LLM_TIMEOUT)
        deadline = float(settings.LLM_DEADLINE)
        # LLM_TIMEOUT bounds each connect/read; LLM_DEADLINE the whole reply, so an endpoint that
        # drips a token at a time cannot hold a worker for longer.
        timeout = httpx.Timeout(seconds, connect=min(5.0, seconds))
        # The operator chose the platform URL (a local model server is fine); tenant URLs are vetted.
        allow_private = self.on_platform or outbound_allow_private()
        try:
            with (
                pinned_client(allow_private=allow_private, deadline=deadline, timeout=timeout) as client,
                client.stream("POST", url, json=payload, headers=headers) as response,
            ):
                if not response.is_success:
                    raise ResponderError(
                        f"LLM endpoint {self._host} answered HTTP {response.status_code}: {self._excerpt(response)}"
                    )
                yield from self._parse(response)
        except DestinationNotAllowed as exc:
            raise ResponderError(f"LLM endpoint {self._host} refused: {NOT_ALLOWED}.") from exc
        except ResolutionFailed as exc:
            raise ResponderError(f"LLM endpoint {self._host} failed: could not resolve the host name.") from exc
        except httpx.TimeoutException as exc:
            raise ResponderError(f"LLM endpoint {self._host} timed out ({type(exc).__name__}).") from exc
        except (httpx.HTTPError, httpx.InvalidURL) as exc:
            raise ResponderError(
                f"LLM endpoint {self._host} failed: {type(exc).__name__}: {self._redact(str(exc))}"
            ) from exc

    def _excerpt(self, response: httpx.Response) -> str:
        body = b""
        try:
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) >= _ERROR_EXCERPT_CHARS * 4:  # enough bytes for the excerpt's characters
                    break
        except httpx.HTTPError:
            pass  # the status alone is still worth reporting
        text = " ".join(body.decode("utf-8", errors="replace").split())[:_ERROR_EXCERPT_CHARS]
        return self._redact(text) or "(empty body)"

    def _bytes(self, response: httpx.Response) -> Iterator[bytes]:
        """The body, refused past MAX_BODY_BYTES (the deadline alone would let 1 GB through)."""
        total = 0
        for chunk in response.iter_bytes():
            total += len(chunk)
            if total > MAX_BODY_BYTES:
                raise ResponderError(f"LLM endpoint {self._host} sent more than {MAX_BODY_BYTES} bytes.")
            yield chunk

    def _lines(self, response: httpx.Response) -> Iterator[str]:
        """Event-stream lines, each refused past MAX_LINE_BYTES (httpx's iter_lines buffers without limit)."""
        buffer = b""
        for chunk in self._bytes(response):
            buffer += chunk
            *lines, buffer = buffer.replace(b"\r\n", b"\n").replace(b"\r", b"\n").split(b"\n")
            for line in [*lines, buffer]:
                if len(line) > MAX_LINE_BYTES:
                    raise ResponderError(f"LLM endpoint {self._host} sent an event line over {MAX_LINE_BYTES} bytes.")
            yield from (line.decode("utf-8", errors="replace") for line in lines)
        if buffer:
            yield buffer.decode("utf-8", errors="replace")

    def _parse(self, response: httpx.Response) -> Iterator[str]:
        sent = 0
        for piece in self._pieces(response):
            sent += len(piece)
            if sent > MAX_REPLY_CHARS:
                raise ResponderError(f"LLM endpoint {self._host} sent a reply over {MAX_REPLY_CHARS} characters.")
            yield piece

    def _pieces(self, response: httpx.Response) -> Iterator[str]:
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            # Some compatible servers ignore "stream": true and answer with one complete JSON object.
            body = b"".join(self._bytes(response))
            message = _first_choice(self._decode(body.decode("utf-8", errors="replace")), "message")
            if message:
                yield message
                return
            raise ResponderError(f"LLM endpoint {self._host} returned an empty reply.")
        received = False
        # One JSON payload per "data:" line, as every OpenAI-compatible server sends; the blank lines
        # between events carry nothing, and comment lines (":") are keep-alives.
        for line in self._lines(response):
            if not line.startswith("data:"):
                continue
            data = line[len("data:") :].strip()
            if data == "[DONE]":
                break
            piece = _first_choice(self._decode(data), "delta")
            if piece:
                received = True
                yield piece
        else:
            if not received:
                raise ResponderError(f"LLM endpoint {self._host} closed the stream without [DONE] or any content.")
            logger.warning("LLM endpoint %s closed the stream without [DONE]; keeping the partial reply.", self._host)
            return
        if not received:
            # A visitor must never see an empty bubble; the caller shows FRIENDLY_ERROR instead.
            raise ResponderError(f"LLM endpoint {self._host} returned an empty reply.")

    def _decode(self, data: str) -> dict[str, Any]:
        try:
            payload = json.loads(data)
        except json.JSONDecodeError as exc:
            raise ResponderError(f"LLM endpoint {self._host} sent malformed JSON: {self._redact(data[:80])!r}") from exc
        if not isinstance(payload, dict):
            raise ResponderError(f"LLM endpoint {self._host} sent an unexpected payload: {self._redact(data[:80])!r}")
        if "error" in payload:
            error = self._redact(json.dumps(payload["error"])[:_ERROR_EXCERPT_CHARS])
            raise ResponderError(f"LLM endpoint {self._host} reported an error: {error}")
        return payload


def _first_choice(payload: dict[str, Any], key: str) -> str:
    """``choices[0][key].content`` when present and a string; chunks without it (e.g. usage) give ""."""
    choices = payload.get("choices")
    if not isinstance(choices, list) or not choices or not isinstance(choices[0], dict):
        return ""
    part = choices[0].get(key)
    content = part.get("content") if isinstance(part, dict) else None
    return content if isinstance(content, str) else ""
