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

logger = logging.getLogger(__name__)

CONTEXT_ENTRIES = 3
# Older turns add cost and latency but rarely change the answer; the question itself is always sent.
MAX_HISTORY_TURNS = 20
_ERROR_EXCERPT_CHARS = 200
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


class OpenAICompatibleResponder:
    """Streams tokens from the chatbot's LLM endpoint, falling back to the PIVRA_LLM_* settings."""

    def __init__(self, chatbot: Chatbot) -> None:
        self.chatbot = chatbot
        self.base_url: str = (chatbot.llm_base_url or settings.LLM_BASE_URL).strip()
        self.api_key: str = (chatbot.llm_api_key or settings.LLM_API_KEY).strip()
        self.model: str = (chatbot.llm_model or settings.LLM_MODEL).strip()

    @property
    def _host(self) -> str:
        # Only the host goes into errors and logs: a base URL may carry credentials in its userinfo or query.
        return urlsplit(self.base_url).hostname or "?"

    def _redact(self, text: str) -> str:
        # Some providers echo (part of) a rejected key in their error body.
        return text.replace(self.api_key, "[redacted]") if self.api_key else text

    def stream(self, *, question: str, history: Sequence[ChatTurn]) -> Iterator[str]:
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
        # The timeout bounds each connect/read, not the whole reply: a long answer streamed steadily is fine.
        timeout = httpx.Timeout(seconds, connect=min(5.0, seconds))
        try:
            with (
                httpx.Client(timeout=timeout, follow_redirects=False) as client,
                client.stream("POST", url, json=payload, headers=headers) as response,
            ):
                if not response.is_success:
                    raise ResponderError(
                        f"LLM endpoint {self._host} answered HTTP {response.status_code}: {self._excerpt(response)}"
                    )
                yield from self._parse(response)
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

    def _parse(self, response: httpx.Response) -> Iterator[str]:
        content_type = response.headers.get("content-type", "")
        if content_type.startswith("application/json"):
            # Some compatible servers ignore "stream": true and answer with one complete JSON object.
            message = _first_choice(self._decode(response.read().decode("utf-8", errors="replace")), "message")
            if message:
                yield message
                return
            raise ResponderError(f"LLM endpoint {self._host} returned an empty reply.")
        received = False
        # One JSON payload per "data:" line, as every OpenAI-compatible server sends; the blank lines
        # between events carry nothing, and comment lines (":") are keep-alives.
        for line in response.iter_lines():
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
