"""BM25 retrieval over a chatbot's knowledge base, and the offline responder built on it."""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import OrderedDict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime

import bm25s
import numpy as np
from bm25s.stopwords import STOPWORDS_EN_PLUS
from django.db.models import Count, Max
from django.utils import translation

from chatbots.models import DEFAULT_FALLBACK, Chatbot, KnowledgeEntry
from chatbots.responders.base import ChatTurn, RetrievedEntry, in_language

# bm25s's plain "en" list (Lucene's 33 words) keeps "what", "how", "does", "you"…, which fill every chat
# question and every FAQ title; its NLTK-based list drops them so the topic words decide the ranking.
_STOPWORDS = frozenset(STOPWORDS_EN_PLUS)
# Letters and digits of any script; underscores and punctuation separate words.
_WORD = re.compile(r"[^\W_]+")
# The question says what an entry is about, so it counts more than the words of a long answer.
_QUESTION_WEIGHT = 2
CACHE_SIZE = 256


def tokenize(text: str) -> list[str]:
    """Lowercase, accent-folded words without punctuation or English stopwords."""
    decomposed = unicodedata.normalize("NFKD", text.casefold())
    folded = "".join(ch for ch in decomposed if not unicodedata.combining(ch))
    return [_fold_plural(word) for word in _WORD.findall(folded) if word not in _STOPWORDS]


def _fold_plural(word: str) -> str:
    # A minimal stemmer (no stemming library is installed): "costs" must find "cost". Applied to both
    # the index and the query, so an odd cut ("news" → "new") still matches itself.
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


@dataclass(frozen=True)
class _Index:
    signature: tuple[int, datetime | None]
    entries: tuple[tuple[str, str], ...]  # (question, answer), in the retriever's document order
    retriever: bm25s.BM25 | None  # None when the chatbot has no active entries


_cache: OrderedDict[int, _Index] = OrderedDict()
_cache_lock = threading.Lock()


def _signature(chatbot: Chatbot) -> tuple[int, datetime | None]:
    # Any save bumps updated_at and any (de)activation or deletion changes the count, so this cheap
    # aggregate tells whether the cached index is stale without loading the entries.
    stats = KnowledgeEntry.objects.filter(chatbot=chatbot, is_active=True).aggregate(
        count=Count("id"), latest=Max("updated_at")
    )
    return stats["count"], stats["latest"]


def _build(signature: tuple[int, datetime | None], chatbot: Chatbot) -> _Index:
    rows = tuple(
        KnowledgeEntry.objects.filter(chatbot=chatbot, is_active=True).order_by("id").values_list("question", "answer")
    )
    if not rows:
        return _Index(signature=signature, entries=(), retriever=None)
    corpus = [tokenize(" ".join([question] * _QUESTION_WEIGHT + [answer])) for question, answer in rows]
    retriever = bm25s.BM25()
    retriever.index(corpus, show_progress=False)
    return _Index(signature=signature, entries=rows, retriever=retriever)


def _index_for(chatbot: Chatbot) -> _Index:
    signature = _signature(chatbot)
    with _cache_lock:
        cached = _cache.get(chatbot.pk)
        if cached is not None and cached.signature == signature:
            _cache.move_to_end(chatbot.pk)
            return cached
    # Built outside the lock so one chatbot's indexing does not stall every other chatbot's questions;
    # two threads may build the same index at once, which only costs time.
    index = _build(signature, chatbot)
    with _cache_lock:
        _cache[chatbot.pk] = index
        _cache.move_to_end(chatbot.pk)
        while len(_cache) > CACHE_SIZE:
            _cache.popitem(last=False)
    return index


def clear_cache() -> None:
    """Forget every cached index (for tests; edits invalidate entries by themselves)."""
    with _cache_lock:
        _cache.clear()


def knowledge_search(*, chatbot: Chatbot, query: str, limit: int = 3) -> list[RetrievedEntry]:
    """The chatbot's active entries that match ``query``, best first; only entries scoring above zero."""
    if limit <= 0:
        return []
    index = _index_for(chatbot)
    if index.retriever is None:
        return []
    token_ids = index.retriever.get_tokens_ids(tokenize(query))
    if not token_ids:
        return []
    scores = np.asarray(index.retriever.get_scores_from_ids(token_ids), dtype=np.float64)
    # Stable sort so ties keep the entries' creation order, making answers reproducible.
    order = np.argsort(-scores, kind="stable")[:limit]
    return [
        RetrievedEntry(question=index.entries[i][0], answer=index.entries[i][1], score=float(scores[i]))
        for i in order
        if scores[i] > 0
    ]


def fallback_text(*, chatbot: Chatbot, language: str = "") -> str:
    """The chatbot's fallback message; one the owner never changed (still Pivra's shipped text) is shown
    in the conversation's ``language`` ("" = the active one: conversations/ai.py streams inside
    ``translation.override(conversation.language)``), as ``chatbots.languages.owner_text`` does for the
    other texts."""
    text = chatbot.fallback_message
    if text == DEFAULT_FALLBACK:
        return in_language(DEFAULT_FALLBACK, language or translation.get_language() or "")
    return text


class KnowledgeBaseResponder:
    """Offline responder: the best-matching entry's answer, or the chatbot's fallback message (in the
    conversation's ``language`` while it is Pivra's own text)."""

    def __init__(self, chatbot: Chatbot, language: str = "") -> None:
        self.chatbot = chatbot
        self.language = language

    def stream(self, *, question: str, history: Sequence[ChatTurn]) -> Iterator[str]:
        matches = knowledge_search(chatbot=self.chatbot, query=question, limit=1)
        yield matches[0].answer if matches else fallback_text(chatbot=self.chatbot, language=self.language)
