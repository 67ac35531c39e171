"""The chat frame: served from our origin, embeddable only by the chatbot's allowed sites."""

from __future__ import annotations

from urllib.parse import urlsplit

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.utils import timezone, translation
from django.utils.cache import patch_vary_headers
from django.utils.translation import gettext as _
from django.views.decorators.clickjacking import xframe_options_exempt

from chatbots.languages import language_direction, owner_text, widget_language
from chatbots.models import Chatbot
from chatbots.office_hours import handoff_hidden_at
from chatbots.services import is_plain_origin, normalize_origin
from handoff.transitions.shared import handoff_available
from pivra.errors import DomainError
from pivra.widget.strings import plural_map, widget_strings

# navigator.languages, joined by "," by the loader: only this much of it is read.
MAX_LANGS_PARAM = 200
MAX_LANGS = 8


def _own_origin() -> str:
    parts = urlsplit(settings.PUBLIC_URL)
    return f"{parts.scheme}://{parts.netloc}"


def allowed_frame_origins(chatbot: Chatbot) -> list[str]:
    """Customer sites from the chatbot's settings, plus our own origin (the demo page and previews).

    The forms store only clean origins, but these go into a response header: anything else that
    reached the row (an older save, a script) is left out rather than trusted."""
    return sorted(origin for origin in {_own_origin(), *chatbot.allowed_origins} if is_plain_origin(origin))


def browser_languages(request: HttpRequest) -> list[str]:
    """The visitor's ``navigator.languages`` as the loader passed them (``langs=fr-FR,en``), bounded."""
    raw = request.GET.get("langs", "")
    if not isinstance(raw, str):
        return []
    if len(raw) > MAX_LANGS_PARAM:  # keep the whole codes that fit (the most wanted come first)
        raw = raw[:MAX_LANGS_PARAM].rpartition(",")[0]
    return [code.strip() for code in raw.split(",") if code.strip()][:MAX_LANGS]


@xframe_options_exempt  # frame-ancestors below replaces X-Frame-Options with a per-chatbot list
def frame(request: HttpRequest, public_key: str) -> HttpResponse:
    chatbot = Chatbot.objects.select_related("workspace").filter(public_key=public_key).first()
    if chatbot is None:
        # No chatbot to ask: the request's language (Accept-Language, LocaleMiddleware).
        response = render(request, "widget/unavailable.html", {"reason": _("This chat is not available.")}, status=404)
        patch_vary_headers(response, ("Accept-Language",))
        return response
    lang = widget_language(
        chatbot=chatbot,
        browser_languages=browser_languages(request),
        accept_language=request.META.get("HTTP_ACCEPT_LANGUAGE", ""),
    )
    with translation.override(lang):
        response = _frame_response(request, chatbot, lang)
    patch_vary_headers(response, ("Accept-Language",))
    response["Content-Language"] = lang  # the page's language, whatever LocaleMiddleware chose for the request
    return response


def _frame_response(request: HttpRequest, chatbot: Chatbot, lang: str) -> HttpResponse:
    direction = language_direction(lang)
    # Our own address as this request reached us also counts (e.g. localhost vs 127.0.0.1).
    here = f"{request.scheme}://{request.get_host()}"
    allowed = sorted({*allowed_frame_origins(chatbot), *([here] if is_plain_origin(here) else [])})
    try:
        parent = normalize_origin(request.GET.get("origin", ""))
    except DomainError:
        parent = ""
    if parent not in allowed:
        response = render(
            request,
            "widget/unavailable.html",
            {"reason": _("This website is not allowed to show this chat."), "lang": lang, "dir": direction},
            status=403,
        )
    else:
        config = {
            "publicKey": chatbot.public_key,
            "name": chatbot.name,
            "avatarUrl": chatbot.avatar_url,
            "accentColor": chatbot.accent_color,
            "greeting": owner_text(chatbot=chatbot, name="greeting", language=lang),
            # Issue 17: the negotiated language, its direction, every visitor-facing string in it and
            # which plural form each Intl.PluralRules category takes (pivra.widget.strings).
            "lang": lang,
            "dir": direction,
            "strings": widget_strings(lang),
            "plural": plural_map(lang),
            "handoffEnabled": handoff_available(chatbot=chatbot),
            # Outside office hours with the owner's "hide" setting; the state frames keep it current.
            "handoffHidden": handoff_hidden_at(chatbot=chatbot, at=timezone.now()),
            "parentOrigin": parent,
            "maxLength": settings.MESSAGE_MAX_LENGTH,
            "attachmentMaxBytes": settings.ATTACHMENT_MAX_BYTES,  # checked again by the server
            # Whether agents see what is typed before it is sent: the widget sends the text only then (and the
            # server drops it whenever the setting is off, pivra.widget.live).
            "typingPreview": chatbot.typing_preview,
            # The resolved screen's "Email me the transcript" (the server refuses it too when off).
            "transcriptEmails": chatbot.transcript_emails,
            "apiBase": "/api/widget",
            "wsPath": "/ws/widget/",
        }
        response = render(
            request, "widget/frame.html", {"config": config, "chatbot": chatbot, "lang": lang, "dir": direction}
        )
    response["Content-Security-Policy"] = (
        "default-src 'self'; img-src 'self' data: blob: https:; style-src 'self' 'unsafe-inline'; "
        f"connect-src 'self' ws://{request.get_host()} wss://{request.get_host()}; frame-ancestors " + " ".join(allowed)
    )
    response["Cache-Control"] = "no-store"
    return response
