"""Idempotent demo data: workspace "Demo" on Starter, "Demo bot" with handoff on, a staff user and two agents."""

from __future__ import annotations

from dataclasses import dataclass

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import transaction

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


@dataclass(frozen=True)
class DemoLogins:
    staff: str
    agents: tuple[str, ...]
    password: str
    chatbot_key: str


@transaction.atomic
def demo_seed(*, password: str) -> DemoLogins:
    """Create or refresh the demo; running it twice leaves the same data."""
    plan_ensure_defaults()
    users = get_user_model().objects
    staff = users.filter(username="admin").first() or users.create_superuser("admin", "admin@example.com", password)
    staff.set_password(password)
    staff.is_staff = staff.is_superuser = True
    staff.save()

    workspace = Workspace.objects.filter(slug="demo").first() or workspace_create(
        name="Demo", owner=staff, plan_code="starter"
    )
    subscription_set(workspace=workspace, plan_code="starter")
    Membership.objects.filter(workspace=workspace, user=staff).update(role=Membership.Role.OWNER)

    agents = []
    for username, first_name in (("alice", "Alice"), ("bob", "Bob")):
        agent = users.filter(username=username).first() or users.create_user(
            username, f"{username}@example.com", password
        )
        agent.set_password(password)
        agent.first_name = first_name
        agent.save()
        membership_add(workspace=workspace, user=agent, role=Membership.Role.AGENT)
        agents.append(username)

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
    return DemoLogins(staff="admin", agents=tuple(agents), password=password, chatbot_key=chatbot.public_key)
