"""Every state change of workspaces, plans, subscriptions, chatbots and knowledge entries."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.utils.text import slugify
from django.utils.translation import gettext as _
from django.utils.translation import ngettext

from chatbots.features import workspace_effective_plan, workspace_has_feature, workspace_limit
from chatbots.models import (
    MAX_TIMEOUT_SECONDS,
    MIN_TIMEOUT_SECONDS,
    Chatbot,
    KnowledgeEntry,
    Membership,
    Plan,
    Subscription,
    Workspace,
)
from chatbots.plans import Feature, Limit, upsert_default_plans
from pivra.errors import DomainError, NotFound

MAX_KEYWORDS = 50
MAX_KEYWORD_LENGTH = 80


def plan_ensure_defaults() -> list[Plan]:
    """Create or refresh the catalogue's plans; idempotent."""
    return upsert_default_plans(Plan)


def _unique_slug(name: str) -> str:
    base = slugify(name)[:50] or "workspace"
    slug, n = base, 2
    while Workspace.objects.filter(slug=slug).exists():
        slug = f"{base}-{n}"
        n += 1
    return slug


@transaction.atomic
def workspace_create(*, name: str, owner: User, plan_code: str = "free") -> Workspace:
    """A workspace with its owner's membership and a subscription to ``plan_code``."""
    name = name.strip()
    if not name:
        raise DomainError("invalid_name", _("A workspace needs a name."))
    plan = Plan.objects.filter(code=plan_code).first()
    if plan is None:
        raise NotFound("unknown_plan", _("There is no plan %(plan)r.") % {"plan": plan_code})
    workspace = Workspace.objects.create(name=name, slug=_unique_slug(name))
    Membership.objects.create(user=owner, workspace=workspace, role=Membership.Role.OWNER)
    Subscription.objects.create(workspace=workspace, plan=plan, status=Subscription.Status.ACTIVE)
    return workspace


def membership_add(*, workspace: Workspace, user: User, role: str = Membership.Role.AGENT) -> Membership:
    """Add ``user`` to the workspace (or change their role); refuses past the plan's agent seats."""
    if role not in Membership.Role.values:
        raise DomainError(
            "invalid_role", _("Role must be one of: %(roles)s.") % {"roles": ", ".join(Membership.Role.values)}
        )
    with transaction.atomic():
        # Lock the workspace row so two concurrent invitations cannot both take the last seat.
        Workspace.objects.select_for_update().get(pk=workspace.pk)
        existing = Membership.objects.filter(workspace=workspace, user=user).first()
        if existing is not None:
            existing.role = role
            existing.save(update_fields=["role"])
            return existing
        seats = workspace_limit(workspace=workspace, limit=Limit.AGENTS)
        if Membership.objects.filter(workspace=workspace).count() >= seats:
            plan = workspace_effective_plan(workspace=workspace)
            raise DomainError(
                "plan_limit",
                ngettext(
                    "The %(plan)s plan allows %(seats)d team member; upgrade to add more.",
                    "The %(plan)s plan allows %(seats)d team members; upgrade to add more.",
                    seats,
                )
                % {"plan": plan.name if plan else _("current"), "seats": seats},
            )
        return Membership.objects.create(workspace=workspace, user=user, role=role)


def subscription_set(
    *,
    workspace: Workspace,
    plan_code: str,
    status: str = Subscription.Status.ACTIVE,
    current_period_end: datetime | None = None,
) -> Subscription:
    plan = Plan.objects.filter(code=plan_code).first()
    if plan is None:
        raise NotFound("unknown_plan", _("There is no plan %(plan)r.") % {"plan": plan_code})
    subscription, _created = Subscription.objects.update_or_create(
        workspace=workspace,
        defaults={"plan": plan, "status": status, "current_period_end": current_period_end},
    )
    return subscription


_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# scheme://host[:port] in normal form (lower case, no trailing slash) and nothing else: no space,
# ";" or "*" that would end the frame's ``frame-ancestors`` source list or widen it.
_PLAIN_ORIGIN = re.compile(rf"https?://{_LABEL}(?:\.{_LABEL})*(?::[0-9]{{1,5}})?")


def is_plain_origin(value: object) -> bool:
    return isinstance(value, str) and _PLAIN_ORIGIN.fullmatch(value) is not None


# A scheme, a 253-character host name and a port; anything longer is not a site address.
MAX_ORIGIN_LENGTH = 300


def normalize_origin(value: str) -> str:
    """``https://Example.com/`` → ``https://example.com``; raises DomainError for anything that is not
    a plain site address. Origins go into a response header (``frame-ancestors``), so ``*`` or
    ``https://a; script-src *`` must be refused here, not merely normalised."""
    invalid = DomainError(
        "invalid_origin", _("%(value)r is not a site address like https://www.example.com.") % {"value": value[:100]}
    )
    raw = value.strip().rstrip("/")
    if len(raw) > MAX_ORIGIN_LENGTH or not raw.isprintable():
        raise invalid
    try:
        parts = urlsplit(raw)
        hostname = parts.hostname
    except ValueError:  # a broken IPv6 literal: "http://[::1"
        raise invalid from None
    if parts.scheme not in ("http", "https") or not hostname:
        raise invalid
    if parts.path not in ("", "/") or parts.query or parts.fragment or parts.username:
        raise DomainError(
            "invalid_origin",
            _("%(value)r must be just the site (scheme and host), without a path.") % {"value": value[:100]},
        )
    try:
        # Browsers report an international domain in its ASCII (punycode) form, as should we.
        host = hostname.encode("idna").decode("ascii").lower()
        port = f":{parts.port}" if parts.port else ""
    except (UnicodeError, ValueError):  # a label too long for IDNA; urlsplit's port, e.g. https://a:99999
        raise invalid from None
    origin = f"{parts.scheme}://{host}{port}"
    if not is_plain_origin(origin):
        raise invalid
    return origin


def clean_keywords(keywords: Iterable[str]) -> list[str]:
    cleaned: list[str] = []
    for keyword in keywords:
        phrase = re.sub(r"\s+", " ", keyword).strip()
        if not phrase:
            continue
        if len(phrase) > MAX_KEYWORD_LENGTH:
            raise DomainError(
                "invalid_keywords",
                _("Keep each trigger keyword under %(n)d characters.") % {"n": MAX_KEYWORD_LENGTH},
            )
        if phrase.lower() not in (k.lower() for k in cleaned):
            cleaned.append(phrase)
    if len(cleaned) > MAX_KEYWORDS:
        raise DomainError("invalid_keywords", _("Use at most %(n)d trigger keywords.") % {"n": MAX_KEYWORDS})
    return cleaned


def chatbot_create(*, workspace: Workspace, name: str, allowed_origins: Iterable[str] = (), **fields: Any) -> Chatbot:
    name = name.strip()
    if not name:
        raise DomainError("invalid_name", _("A chatbot needs a name."))
    with transaction.atomic():
        Workspace.objects.select_for_update().get(pk=workspace.pk)
        allowed = workspace_limit(workspace=workspace, limit=Limit.CHATBOTS)
        if Chatbot.objects.filter(workspace=workspace).count() >= allowed:
            raise DomainError(
                "plan_limit",
                ngettext(
                    "Your plan allows %(n)d chatbot; upgrade to add more.",
                    "Your plan allows %(n)d chatbots; upgrade to add more.",
                    allowed,
                )
                % {"n": allowed},
            )
        chatbot = Chatbot(
            workspace=workspace,
            name=name,
            allowed_origins=[normalize_origin(o) for o in allowed_origins],
            **fields,
        )
        chatbot.full_clean()
        chatbot.save()
    return chatbot


def chatbot_update_handoff_settings(
    *,
    chatbot: Chatbot,
    enabled: bool,
    keywords: Iterable[str],
    waiting_message: str,
    timeout_seconds: int,
    busy_message: str,
) -> Chatbot:
    """Save the Human Handoff section; enabling requires a plan with the handoff feature."""
    if enabled and not workspace_has_feature(workspace=chatbot.workspace, feature=Feature.HANDOFF):
        raise DomainError(
            "plan_required",
            _("Human handoff is available on Starter plan and above. Upgrade to enable it."),
            status=402,
        )
    if not MIN_TIMEOUT_SECONDS <= timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise DomainError(
            "invalid_timeout",
            _("Response timeout must be between %(min)d and %(max)d seconds.")
            % {"min": MIN_TIMEOUT_SECONDS, "max": MAX_TIMEOUT_SECONDS},
        )
    waiting_message, busy_message = waiting_message.strip(), busy_message.strip()
    if not waiting_message or not busy_message:
        raise DomainError("invalid_message", _("The waiting and team busy messages cannot be empty."))
    if len(waiting_message) > 500 or len(busy_message) > 500:
        raise DomainError(
            "invalid_message", _("Keep the waiting and team busy messages under %(n)d characters.") % {"n": 500}
        )
    chatbot.handoff_enabled = enabled
    chatbot.handoff_keywords = clean_keywords(keywords)
    chatbot.handoff_waiting_message = waiting_message
    chatbot.handoff_timeout_seconds = timeout_seconds
    chatbot.handoff_busy_message = busy_message
    chatbot.save(
        update_fields=[
            "handoff_enabled",
            "handoff_keywords",
            "handoff_waiting_message",
            "handoff_timeout_seconds",
            "handoff_busy_message",
            "updated_at",
        ]
    )
    return chatbot


def chatbot_set_allowed_origins(*, chatbot: Chatbot, origins: Iterable[str]) -> Chatbot:
    chatbot.allowed_origins = sorted({normalize_origin(o) for o in origins if o.strip()})
    chatbot.save(update_fields=["allowed_origins", "updated_at"])
    return chatbot


def knowledge_entry_save(
    *, chatbot: Chatbot, question: str, answer: str, is_active: bool = True, entry: KnowledgeEntry | None = None
) -> KnowledgeEntry:
    """Create or edit an entry; refuses an empty question/answer or an entry past the plan's limit."""
    question, answer = question.strip(), answer.strip()
    if not question or not answer:
        raise DomainError("invalid_entry", _("A knowledge entry needs both a question and an answer."))
    if len(question) > 300 or len(answer) > 5000:
        raise DomainError(
            "invalid_entry",
            _("Keep questions under %(question)d and answers under %(answer)d characters.")
            % {"question": 300, "answer": 5000},
        )
    if entry is None:
        allowed = workspace_limit(workspace=chatbot.workspace, limit=Limit.KNOWLEDGE_ENTRIES)
        if KnowledgeEntry.objects.filter(chatbot=chatbot).count() >= allowed:
            raise DomainError(
                "plan_limit",
                ngettext(
                    "Your plan allows %(n)d knowledge entry; upgrade to add more.",
                    "Your plan allows %(n)d knowledge entries; upgrade to add more.",
                    allowed,
                )
                % {"n": allowed},
            )
        entry = KnowledgeEntry(chatbot=chatbot)
    elif entry.chatbot_id != chatbot.pk:
        raise NotFound("not_found", _("No such knowledge entry."))
    entry.question, entry.answer, entry.is_active = question, answer, is_active
    entry.save()
    return entry


def knowledge_entry_delete(*, entry: KnowledgeEntry) -> None:
    entry.delete()


def user_create(*, username: str, password: str, email: str = "", is_staff: bool = False) -> User:
    user_model = get_user_model()
    if is_staff:
        return user_model.objects.create_superuser(username=username, email=email, password=password)
    return user_model.objects.create_user(username=username, email=email, password=password)


def llm_url_normalize(url: str) -> str:
    """An endpoint URL for comparison: scheme and host are case-insensitive, a trailing slash is noise."""
    url = url.strip()
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return url.rstrip("/")
    return f"{parts.scheme.lower()}://{parts.netloc.lower()}{parts.path.rstrip('/')}" + (
        f"?{parts.query}" if parts.query else ""
    )


def chatbot_llm_key_next(*, chatbot: Chatbot, llm_base_url: str, llm_api_key: str | None) -> str:
    """The key to store when saving ``llm_base_url``: ``llm_api_key`` when given ("" removes it);
    otherwise the saved key, unless the URL changed. A key was given for one endpoint: keeping it
    while the URL moves would let a workspace point the URL at its own server and read the key off
    the next request (including a key the operator provisioned). The admin form uses this too."""
    if llm_api_key is not None:
        return llm_api_key.strip()
    if chatbot.pk is None or llm_url_normalize(llm_base_url) != llm_url_normalize(chatbot.llm_base_url):
        return ""
    return chatbot.llm_api_key


def chatbot_update_general(
    *,
    chatbot: Chatbot,
    name: str,
    greeting: str,
    accent_color: str,
    allowed_origins: Iterable[str],
    ai_provider: str,
    llm_base_url: str,
    llm_model: str,
    llm_api_key: str | None,
    fallback_message: str,
) -> Chatbot:
    """Save the General section. ``llm_api_key=None`` keeps the stored key (unless the endpoint URL
    changes, which removes it), ``""`` removes it."""
    name, greeting, fallback_message = name.strip(), greeting.strip(), fallback_message.strip()
    if not name or not greeting or not fallback_message:
        raise DomainError("invalid_settings", _("Name, greeting and fallback answer cannot be empty."))
    if ai_provider not in Chatbot.Provider.values:
        raise DomainError("invalid_settings", _("Choose the knowledge base or an OpenAI-compatible endpoint."))
    if ai_provider == Chatbot.Provider.OPENAI and not workspace_has_feature(
        workspace=chatbot.workspace, feature=Feature.LLM
    ):
        raise DomainError(
            "plan_required", _("Connecting your own AI model is available on Starter plan and above."), status=402
        )
    chatbot.name, chatbot.greeting, chatbot.accent_color = name, greeting, accent_color
    chatbot.allowed_origins = sorted({normalize_origin(o) for o in allowed_origins if o.strip()})
    chatbot.llm_api_key = chatbot_llm_key_next(chatbot=chatbot, llm_base_url=llm_base_url, llm_api_key=llm_api_key)
    chatbot.ai_provider, chatbot.llm_base_url, chatbot.llm_model = ai_provider, llm_base_url.strip(), llm_model.strip()
    chatbot.fallback_message = fallback_message
    # Only this section's fields: a full save would write back stale language settings and text variants
    # that another owner saved meanwhile (their writers lock the row; this page's copy may be older).
    chatbot.full_clean(exclude=["language", "default_language", "text_variants"])
    chatbot.save(
        update_fields=[
            "name",
            "greeting",
            "accent_color",
            "allowed_origins",
            "llm_api_key",
            "ai_provider",
            "llm_base_url",
            "llm_model",
            "fallback_message",
            "updated_at",
        ]
    )
    return chatbot


def chatbot_update_languages(*, chatbot: Chatbot, language: str, default_language: str) -> Chatbot:
    """Save the Language section: ``language`` fixes the widget's language ("" follows the visitor's
    browser); ``default_language`` is the one the default texts are written in. Variants of other
    languages are kept (a variant of the new default is simply not used while it is the default)."""
    codes = [code for code, _name in settings.LANGUAGES]
    if language not in ("", *codes) or default_language not in codes:
        raise DomainError("invalid_language", _("Choose one of the languages offered."))
    chatbot.language, chatbot.default_language = language, default_language
    chatbot.save(update_fields=["language", "default_language", "updated_at"])
    return chatbot
