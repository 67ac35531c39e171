"""Test data built through the services, so tests exercise the same paths as the product."""

from __future__ import annotations

import itertools
from dataclasses import dataclass
from typing import Any

from django.contrib.auth.models import User

from chatbots.models import Chatbot, Membership, Workspace
from chatbots.services import chatbot_create, membership_add, plan_ensure_defaults, workspace_create

_counter = itertools.count(1)


def make_user(username: str | None = None, *, password: str = "pass-12345") -> User:
    username = username or f"user{next(_counter)}"
    return User.objects.create_user(username=username, email=f"{username}@example.com", password=password)


def make_workspace(name: str = "Acme", *, plan: str = "starter", owner: User | None = None) -> Workspace:
    plan_ensure_defaults()  # a transactional test's flush removes the migration's plans
    return workspace_create(name=name, owner=owner or make_user(), plan_code=plan)


def make_chatbot(workspace: Workspace, name: str = "Helper", **fields: Any) -> Chatbot:
    # The brief's classic flow (a request waits for the response timeout) unless a test asks for
    # skip-the-wait: service tests open no agent console, so with the product default (on) every
    # request would go straight to Team busy. Tests of skip-the-wait pass True.
    fields.setdefault("handoff_skip_wait_when_offline", False)
    return chatbot_create(workspace=workspace, name=name, **fields)


@dataclass
class Personas:
    workspace: Workspace
    owner: User
    teammate: User
    outsider: User
    other_workspace: Workspace
    chatbot: Chatbot
    other_chatbot: Chatbot


def chatbot_admin_form(bot: Chatbot, **fields: object) -> dict[str, object]:
    """The POST data of the chatbot's admin change page, as it stands, with ``fields`` changed."""
    return {
        "workspace": bot.workspace_id,
        "name": bot.name,
        "allowed_origins": "[]",
        "accent_color": bot.accent_color,
        "greeting": bot.greeting,
        "ai_provider": bot.ai_provider,
        "fallback_message": bot.fallback_message,
        "handoff_keywords": "[]",
        "handoff_waiting_message": bot.handoff_waiting_message,
        "handoff_timeout_seconds": 180,
        "handoff_busy_message": bot.handoff_busy_message,
        "handoff_offline_message": bot.handoff_offline_message,
        "handoff_routing": bot.handoff_routing,
        "office_hours_timezone": bot.office_hours_timezone,
        "office_hours": "{}",
        "office_closed_dates": "[]",
        "knowledge_entries-TOTAL_FORMS": 0,
        "knowledge_entries-INITIAL_FORMS": 0,
        **fields,
    }


def make_personas() -> Personas:
    owner, teammate, outsider = make_user("owner"), make_user("teammate"), make_user("outsider")
    workspace = make_workspace("Acme", owner=owner)
    membership_add(workspace=workspace, user=teammate, role=Membership.Role.AGENT)
    other = make_workspace("Other", owner=outsider)
    return Personas(
        workspace=workspace,
        owner=owner,
        teammate=teammate,
        outsider=outsider,
        other_workspace=other,
        chatbot=make_chatbot(workspace, "Acme bot"),
        other_chatbot=make_chatbot(other, "Other bot"),
    )


def handoff_settings_form(**overrides: str) -> dict[str, str]:
    """What the settings page's Human Handoff section posts, with ``overrides``."""
    form = {
        "section": "handoff",
        "enabled": "on",
        "keywords": "speak to someone\ntalk to real person",
        "waiting_message": "Connecting you with the team now…",
        "timeout_seconds": "120",
        "busy_message": "Our team is currently busy…",
        # The issue-15 fields the page always posts (defaults: always open, skip the wait when offline).
        "handoff_skip_wait_when_offline": "on",
        "handoff_offline_message": "We're not online right now.",
        "handoff_idle_minutes": "",
        "handoff_routing": "first_claim",
        "office_hours_timezone": "UTC",
        "office_closed_dates": "",
    }
    form.update(overrides)
    return form
