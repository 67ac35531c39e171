"""Which language the widget speaks, and the owner's words in it (issue 17).

The widget's language is, in order: the chatbot's fixed ``language`` if the owner set one; else the
first of the visitor's browser languages (``navigator.languages``, then ``Accept-Language``) that
Pivra speaks; else the chatbot's ``default_language``. The owner's texts (greeting, waiting, busy,
offline messages and trigger keywords) may have a variant per language; a missing one falls back to
the default text, and a default the owner never changed is shown in Pivra's own translation.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Literal

from django.conf import settings
from django.db import transaction
from django.utils import translation
from django.utils.translation import gettext as _
from django.utils.translation import trans_real

from chatbots.models import (
    DEFAULT_BUSY_MESSAGE,
    DEFAULT_GREETING,
    DEFAULT_OFFLINE_MESSAGE,
    DEFAULT_WAITING_MESSAGE,
    Chatbot,
)
from chatbots.services import clean_keywords
from pivra.errors import DomainError

OwnerText = Literal["greeting", "waiting", "busy", "offline"]
# Variant key -> the Chatbot field holding the default-language text, and the text Pivra ships.
OWNER_TEXTS: dict[str, tuple[str, str]] = {
    "greeting": ("greeting", DEFAULT_GREETING),
    "waiting": ("handoff_waiting_message", DEFAULT_WAITING_MESSAGE),
    "busy": ("handoff_busy_message", DEFAULT_BUSY_MESSAGE),
    "offline": ("handoff_offline_message", DEFAULT_OFFLINE_MESSAGE),
}
OWNER_TEXT_MAX = 500
# A browser may list many languages; a visitor may send anything: only this many candidates are tried.
MAX_CANDIDATES = 12
MAX_CANDIDATE_LENGTH = 35
MAX_ACCEPT_LANGUAGE = 500  # longer headers are ignored, not parsed (as Django does for its own negotiation)


def language_codes() -> list[str]:
    return [code for code, _name in settings.LANGUAGES]


def supported_language(code: Any) -> str | None:
    """``"fr-FR"`` -> ``"fr"``, ``"pt-BR"``/``"pt"`` -> ``"pt-br"``; None when Pivra does not speak it."""
    if not isinstance(code, str) or not code or len(code) > MAX_CANDIDATE_LENGTH or code == "*":
        return None
    try:
        return translation.get_supported_language_variant(code.strip().lower().replace("_", "-"))
    except LookupError:
        return None


def accept_language_codes(header: str) -> list[str]:
    """The codes of an ``Accept-Language`` header, most wanted first (q=0 ones dropped)."""
    if not header or len(header) > MAX_ACCEPT_LANGUAGE:
        return []
    return [code for code, q in trans_real.parse_accept_lang_header(header) if q > 0 and code != "*"]


def widget_language(*, chatbot: Chatbot, browser_languages: Sequence[Any] = (), accept_language: str = "") -> str:
    """The negotiated widget language (a code of settings.LANGUAGES)."""
    if chatbot.language and chatbot.language in language_codes():
        return chatbot.language
    candidates = [*list(browser_languages)[:MAX_CANDIDATES], *accept_language_codes(accept_language)[:MAX_CANDIDATES]]
    for candidate in candidates:
        found = supported_language(candidate)
        if found:
            return found
    return chatbot.default_language if chatbot.default_language in language_codes() else settings.LANGUAGE_CODE


def language_direction(code: str) -> Literal["ltr", "rtl"]:
    return "rtl" if translation.get_language_info(code)["bidi"] else "ltr"


def _variant(chatbot: Chatbot, language: str) -> Mapping[str, Any]:
    variants = chatbot.text_variants if isinstance(chatbot.text_variants, dict) else {}
    found = variants.get(language)
    return found if isinstance(found, dict) else {}


def owner_text(*, chatbot: Chatbot, name: OwnerText, language: str) -> str:
    """The owner's ``name`` text for a conversation in ``language``: its variant, else the default text
    (in Pivra's translation when it is still the text Pivra ships)."""
    field, shipped = OWNER_TEXTS[name]
    if language and language != chatbot.default_language:
        variant = _variant(chatbot, language).get(name)
        if isinstance(variant, str) and variant.strip():
            return variant
    text = str(getattr(chatbot, field))
    if text == shipped and language:
        with translation.override(language):
            return translation.gettext(shipped)
    return text


def handoff_keywords_for(*, chatbot: Chatbot, language: str) -> list[str]:
    """Trigger keywords for a conversation in ``language``: that language's plus the default ones."""
    extra = _variant(chatbot, language).get("keywords") if language and language != chatbot.default_language else None
    words = [k for k in (extra or []) if isinstance(k, str)]
    return [*words, *[k for k in chatbot.handoff_keywords if k not in words]]


def chatbot_text_variants_set(
    *, chatbot: Chatbot, language: str, texts: Mapping[str, str], keywords: Iterable[str]
) -> Chatbot:
    """Save the owner's texts for one language other than the default (empty texts fall back to the
    default ones; all empty removes the variant)."""
    if language not in language_codes() or language == chatbot.default_language:
        raise DomainError("invalid_language", _("Choose a language other than the default one."))
    variant: dict[str, Any] = {}
    for name in OWNER_TEXTS:
        text = str(texts.get(name) or "").strip()
        if len(text) > OWNER_TEXT_MAX:
            raise DomainError("invalid_message", _("Keep each text under %(n)d characters.") % {"n": OWNER_TEXT_MAX})
        if text:
            variant[name] = text
    cleaned = clean_keywords(keywords)
    if cleaned:
        variant["keywords"] = cleaned
    with transaction.atomic():  # two owners saving two languages at once both keep theirs
        locked = Chatbot.objects.select_for_update().only("text_variants").get(pk=chatbot.pk)
        variants = dict(locked.text_variants) if isinstance(locked.text_variants, dict) else {}
        if variant:
            variants[language] = variant
        else:
            variants.pop(language, None)
        chatbot.text_variants = variants
        chatbot.save(update_fields=["text_variants", "updated_at"])
    return chatbot
