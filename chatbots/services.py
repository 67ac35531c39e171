"""Every state change of workspaces, plans, subscriptions, chatbots and knowledge entries."""

from __future__ import annotations

import re
from collections.abc import Iterable
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth import get_user_model
from django.contrib.auth.models import User
from django.db import transaction
from django.utils.text import slugify

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
        raise DomainError("invalid_name", "A workspace needs a name.")
    plan = Plan.objects.filter(code=plan_code).first()
    if plan is None:
        raise NotFound("unknown_plan", f"There is no plan {plan_code!r}.")
    workspace = Workspace.objects.create(name=name, slug=_unique_slug(name))
    Membership.objects.create(user=owner, workspace=workspace, role=Membership.Role.OWNER)
    Subscription.objects.create(workspace=workspace, plan=plan, status=Subscription.Status.ACTIVE)
    return workspace


def membership_add(*, workspace: Workspace, user: User, role: str = Membership.Role.AGENT) -> Membership:
    """Add ``user`` to the workspace (or change their role); refuses past the plan's agent seats."""
    if role not in Membership.Role.values:
        raise DomainError("invalid_role", f"Role must be one of: {', '.join(Membership.Role.values)}.")
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
            members = "team member" if seats == 1 else "team members"
            raise DomainError(
                "plan_limit",
                f"The {plan.name if plan else 'current'} plan allows {seats} {members}; upgrade to add more.",
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
        raise NotFound("unknown_plan", f"There is no plan {plan_code!r}.")
    subscription, _ = Subscription.objects.update_or_create(
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
    invalid = DomainError("invalid_origin", f"{value[:100]!r} is not a site address like https://www.example.com.")
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
        raise DomainError("invalid_origin", f"{value[:100]!r} must be just the site (scheme and host), without a path.")
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
            raise DomainError("invalid_keywords", f"Keep each trigger keyword under {MAX_KEYWORD_LENGTH} characters.")
        if phrase.lower() not in (k.lower() for k in cleaned):
            cleaned.append(phrase)
    if len(cleaned) > MAX_KEYWORDS:
        raise DomainError("invalid_keywords", f"Use at most {MAX_KEYWORDS} trigger keywords.")
    return cleaned


def chatbot_create(*, workspace: Workspace, name: str, allowed_origins: Iterable[str] = (), **fields: Any) -> Chatbot:
    name = name.strip()
    if not name:
        raise DomainError("invalid_name", "A chatbot needs a name.")
    with transaction.atomic():
        Workspace.objects.select_for_update().get(pk=workspace.pk)
        allowed = workspace_limit(workspace=workspace, limit=Limit.CHATBOTS)
        if Chatbot.objects.filter(workspace=workspace).count() >= allowed:
            raise DomainError("plan_limit", f"Your plan allows {allowed} chatbot(s); upgrade to add more.")
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
            "Human handoff is available on Starter plan and above. Upgrade to enable it.",
            status=402,
        )
    if not MIN_TIMEOUT_SECONDS <= timeout_seconds <= MAX_TIMEOUT_SECONDS:
        raise DomainError(
            "invalid_timeout",
            f"Response timeout must be between {MIN_TIMEOUT_SECONDS} and {MAX_TIMEOUT_SECONDS} seconds.",
        )
    waiting_message, busy_message = waiting_message.strip(), busy_message.strip()
    if not waiting_message or not busy_message:
        raise DomainError("invalid_message", "The waiting and team busy messages cannot be empty.")
    if len(waiting_message) > 500 or len(busy_message) > 500:
        raise DomainError("invalid_message", "Keep the waiting and team busy messages under 500 characters.")
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
        raise DomainError("invalid_entry", "A knowledge entry needs both a question and an answer.")
    if len(question) > 300 or len(answer) > 5000:
        raise DomainError("invalid_entry", "Keep questions under 300 and answers under 5000 characters.")
    if entry is None:
        allowed = workspace_limit(workspace=chatbot.workspace, limit=Limit.KNOWLEDGE_ENTRIES)
        if KnowledgeEntry.objects.filter(chatbot=chatbot).count() >= allowed:
            raise DomainError("plan_limit", f"Your plan allows {allowed} knowledge entries; upgrade to add more.")
        entry = KnowledgeEntry(chatbot=chatbot)
    elif entry.chatbot_id != chatbot.pk:
        raise NotFound("not_found", "No such knowledge entry.")
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
        raise DomainError("invalid_settings", "Name, greeting and fallback answer cannot be empty.")
    if ai_provider not in Chatbot.Provider.values:
        raise DomainError("invalid_settings", "Choose the knowledge base or an OpenAI-compatible endpoint.")
    if ai_provider == Chatbot.Provider.OPENAI and not workspace_has_feature(
        workspace=chatbot.workspace, feature=Feature.LLM
    ):
        raise DomainError(
            "plan_required", "Connecting your own AI model is available on Starter plan and above.", status=402
        )
    chatbot.name, chatbot.greeting, chatbot.accent_color = name, greeting, accent_color
    chatbot.allowed_origins = sorted({normalize_origin(o) for o in allowed_origins if o.strip()})
    chatbot.llm_api_key = chatbot_llm_key_next(chatbot=chatbot, llm_base_url=llm_base_url, llm_api_key=llm_api_key)
    chatbot.ai_provider, chatbot.llm_base_url, chatbot.llm_model = ai_provider, llm_base_url.strip(), llm_model.strip()
    chatbot.fallback_message = fallback_message
    chatbot.full_clean()
    chatbot.save()
    return chatbot
