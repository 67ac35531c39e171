"""The knowledge-base responder: BM25 retrieval over a chatbot's entries, its index cache, and the
fallback message."""

from __future__ import annotations

from collections.abc import Iterator
from unittest import mock

import pytest
from django.utils import translation

from chatbots.models import DEFAULT_FALLBACK, Chatbot
from chatbots.responders import KnowledgeBaseResponder, knowledge_search
from chatbots.responders import knowledge as knowledge_module
from chatbots.responders.knowledge import tokenize
from chatbots.services import knowledge_entry_save
from tests.factories import make_chatbot, make_workspace
from tests.responder_helpers import FAQ, SHIPPING_ANSWER, add_entries


@pytest.fixture(autouse=True)
def _fresh_index_cache() -> Iterator[None]:
    knowledge_module.clear_cache()
    yield
    knowledge_module.clear_cache()


def answer(chatbot: Chatbot, question: str) -> list[str]:
    return list(KnowledgeBaseResponder(chatbot).stream(question=question, history=[]))


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


def _tagged(message: str) -> str:
    """gettext stand-in showing the language active when the text was worded (no catalogue needed)."""
    return f"[{translation.get_language()}] {message}"


@pytest.mark.django_db
def test_an_untouched_default_fallback_speaks_the_conversation_language_and_an_owner_text_never_changes() -> None:
    default = make_chatbot(make_workspace())
    assert default.fallback_message == DEFAULT_FALLBACK
    own = make_chatbot(make_workspace("Own"), fallback_message="Nothing here yet.")
    with mock.patch("chatbots.responders.base.translation.gettext", _tagged):
        french = list(KnowledgeBaseResponder(default, language="fr").stream(question="shipping", history=[]))
        with translation.override("de"):  # no language given: the active one (conversations/ai.py sets it)
            active = list(KnowledgeBaseResponder(default).stream(question="shipping", history=[]))
        owners = list(KnowledgeBaseResponder(own, language="fr").stream(question="shipping", history=[]))
    assert french == [f"[fr] {DEFAULT_FALLBACK}"]
    assert active == [f"[de] {DEFAULT_FALLBACK}"]
    assert owners == ["Nothing here yet."]  # the owner's own words are data, never translated


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
