"""Idempotent demo data: workspace "Demo" on Starter, "Demo bot" with handoff on, a staff user and two agents.

Passwords are only ever set on a user created here: a seed never resets a password someone changed."""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.contrib.auth import get_user_model
from django.contrib.auth.hashers import check_password
from django.core import checks
from django.db import DatabaseError, transaction

from chatbots.models import Chatbot, KnowledgeEntry, Membership, Workspace
from chatbots.services import (
    chatbot_set_allowed_origins,
    chatbot_update_handoff_settings,
    knowledge_entry_save,
    membership_add,
    plan_ensure_defaults,
    subscription_set,
    workspace_create,
)

DEMO_KNOWLEDGE = [
    (
        "How much does shipping cost?",
        "Shipping is free on orders over $75. Below that it's a flat $6.95, and orders ship within one business day.",
    ),
    (
        "What is your return policy?",
        "You can return any unused item within 60 days for a full refund. Start a return from your order page.",
    ),
    (
        "Do your products have a warranty?",
        "Every Northwind product has a lifetime warranty against defects in materials and workmanship.",
    ),
    (
        "How do I choose the right tent size?",
        "Pick a tent rated for one more person than will sleep in it, so you have room for gear.",
    ),
    (
        "What are your opening hours?",
        "Our team answers chats Monday to Friday, 9am to 6pm Central European Time.",
    ),
]
DEMO_KEYWORDS = ["speak to someone", "talk to real person", "human", "agent"]


DEMO_USERS = (("admin", ""), ("alice", "Alice"), ("bob", "Bob"))
# The password every demo login got before seeds made random ones; public, so never on an https site.
KNOWN_DEMO_PASSWORD = "pivra-demo"
# The tag of ``demo_password_check``: the run command runs that check alone before it starts.
DEMO_PASSWORD_CHECK_TAG = "pivra_demo_password"


@dataclass(frozen=True)
class DemoLogin:
    username: str
    password: str
    staff: bool


@dataclass(frozen=True)
class DemoSeed:
    """What a seed did: the logins it created just now (an existing user is never changed), and the bot."""

    created: tuple[DemoLogin, ...]
    chatbot_key: str


def demo_is_needed() -> bool:
    """A database with no user and no workspace yet: the first start of a fresh install."""
    return not get_user_model().objects.exists() and not Workspace.objects.exists()


def demo_password() -> str:
    return secrets.token_urlsafe(12)


@transaction.atomic
def demo_seed(*, password: str | None = None) -> DemoSeed:
    """Create or refresh the demo data; running it twice leaves the same data. A missing demo user is
    created with ``password`` (a random one per user when None); an existing user keeps theirs."""
    plan_ensure_defaults()
    users = get_user_model().objects
    created: list[DemoLogin] = []
    accounts: dict[str, Any] = {}
    for username, first_name in DEMO_USERS:
        user = users.filter(username=username).first()
        if user is None:  # an existing user is left exactly as they are: password, name, staff flags
            login = DemoLogin(username=username, password=password or demo_password(), staff=username == "admin")
            create = users.create_superuser if login.staff else users.create_user
            user = create(username, f"{username}@example.com", login.password, first_name=first_name)
            created.append(login)
        accounts[username] = user
    staff = accounts["admin"]

    workspace = Workspace.objects.filter(slug="demo").first() or workspace_create(
        name="Demo", owner=staff, plan_code="starter"
    )
    subscription_set(workspace=workspace, plan_code="starter")
    Membership.objects.filter(workspace=workspace, user=staff).update(role=Membership.Role.OWNER)

    for username in ("alice", "bob"):
        membership_add(workspace=workspace, user=accounts[username], role=Membership.Role.AGENT)

    chatbot = Chatbot.objects.filter(workspace=workspace, name="Demo bot").first()
    if chatbot is None:
        chatbot = Chatbot.objects.create(workspace=workspace, name="Demo bot")
    chatbot_set_allowed_origins(chatbot=chatbot, origins=[settings.PUBLIC_URL])
    chatbot_update_handoff_settings(
        chatbot=chatbot,
        enabled=True,
        keywords=DEMO_KEYWORDS,
        waiting_message=chatbot.handoff_waiting_message,
        timeout_seconds=chatbot.handoff_timeout_seconds,
        busy_message=chatbot.handoff_busy_message,
    )
    for question, answer in DEMO_KNOWLEDGE:
        entry = KnowledgeEntry.objects.filter(chatbot=chatbot, question=question).first()
        knowledge_entry_save(chatbot=chatbot, question=question, answer=answer, entry=entry)
    return DemoSeed(created=tuple(created), chatbot_key=chatbot.public_key)


def demo_password_check(app_configs: Any = None, **kwargs: Any) -> list[checks.CheckMessage]:
    """pivra.E010 when the site is public (https) and an active demo login still has the published
    demo password, as an install upgraded from the old seed has. Only the three demo usernames are
    tried, so this costs three hash checks at most. Registered in ``ChatbotsConfig.ready``."""
    if not settings.PUBLIC_URL.startswith("https://"):
        return []
    try:
        users = list(
            get_user_model()
            .objects.filter(username__in=[name for name, _ in DEMO_USERS], is_active=True)
            .order_by("username")
            .values_list("username", "password")
        )
    except DatabaseError:
        return []  # no database yet (or not migrated): no login to check
    # hashers.check_password, not User.check_password: a check must not rehash and save a password.
    weak = [username for username, encoded in users if check_password(KNOWN_DEMO_PASSWORD, encoded)]
    return [
        checks.Error(
            f"The login {username!r} still has the public demo password and PIVRA_PUBLIC_URL is https: "
            f"change it with `manage.py changepassword {username}`.",
            id="pivra.E010",
        )
        for username in weak
    ]
