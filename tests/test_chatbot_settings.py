from __future__ import annotations

import pytest
from django.test import Client

from chatbots.models import KnowledgeEntry
from chatbots.services import subscription_set
from tests.factories import Personas, handoff_settings_form

pytestmark = pytest.mark.django_db

URL = "/dashboard/settings/"


def test_the_handoff_section_saves_with_the_briefs_fields(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    page = client.get(URL).content.decode()
    for label in (
        "Human Handoff",
        "Handoff enabled",
        "Trigger keywords",
        "Waiting message",
        "Response timeout (seconds)",
        "Team busy message",
        "Save settings",
    ):
        assert label in page
    response = client.post(URL, handoff_settings_form(chatbot=str(personas.chatbot.pk)))
    assert response.status_code == 302
    personas.chatbot.refresh_from_db()
    assert personas.chatbot.handoff_enabled
    assert personas.chatbot.handoff_keywords == ["speak to someone", "talk to real person"]
    assert personas.chatbot.handoff_timeout_seconds == 120


def test_a_timeout_out_of_bounds_gets_a_clear_error_and_nothing_changes(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    response = client.post(URL, handoff_settings_form(timeout_seconds="1"))
    assert response.status_code == 200
    assert "Ensure this value is greater than or equal to 5." in response.content.decode()
    personas.chatbot.refresh_from_db()
    assert personas.chatbot.handoff_enabled is False and personas.chatbot.handoff_timeout_seconds == 180


def test_the_free_plan_shows_a_locked_section_and_the_server_refuses(client: Client, personas: Personas) -> None:
    subscription_set(workspace=personas.workspace, plan_code="free")
    client.force_login(personas.owner)
    page = client.get(URL).content.decode()
    assert "Human handoff is available on Starter plan and above." in page
    assert "Upgrade plan" in page
    assert 'name="enabled"' not in page
    response = client.post(URL, handoff_settings_form())
    assert response.status_code == 200
    assert "Human handoff is available on Starter plan and above" in response.content.decode()
    personas.chatbot.refresh_from_db()
    assert personas.chatbot.handoff_enabled is False


def test_agents_can_view_but_not_change_settings(client: Client, personas: Personas) -> None:
    client.force_login(personas.teammate)
    assert "only workspace owners and admins can change them" in client.get(URL).content.decode()
    client.post(URL, handoff_settings_form())
    personas.chatbot.refresh_from_db()
    assert personas.chatbot.handoff_enabled is False


def test_another_workspaces_chatbot_is_not_found(client: Client, personas: Personas) -> None:
    client.force_login(personas.teammate)
    page = client.get(URL, {"chatbot": personas.other_chatbot.pk})
    assert page.status_code == 404
    assert "Other bot" not in page.content.decode()


def test_knowledge_entries_are_added_edited_and_deleted(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    bot = personas.chatbot.pk
    client.post(
        "/dashboard/settings/knowledge/",
        {"chatbot": bot, "question": "Do you ship abroad?", "answer": "Yes, to 40 countries.", "is_active": "on"},
    )
    entry = KnowledgeEntry.objects.get(chatbot_id=bot)
    client.post(
        "/dashboard/settings/knowledge/",
        {
            "chatbot": bot,
            "entry": entry.pk,
            "question": entry.question,
            "answer": "Yes, to 45 countries.",
            "is_active": "on",
        },
    )
    entry.refresh_from_db()
    assert entry.answer == "Yes, to 45 countries."
    client.post(f"/dashboard/settings/knowledge/{entry.pk}/delete/", {"chatbot": bot})
    assert not KnowledgeEntry.objects.filter(chatbot_id=bot).exists()


def test_the_embed_snippet_is_one_script_tag(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    page = client.get(URL).content.decode()
    assert (
        f"&lt;script src=&quot;http://127.0.0.1:8000/static/widget/loader.js&quot; "
        f"data-pivra-key=&quot;{personas.chatbot.public_key}&quot; async&gt;&lt;/script&gt;"
    ) in page
