"""The console's team pages: the sidebar status control (plain form), the "Online now" list and the
capacity form on the Overview's Team table."""

from __future__ import annotations

import pytest
from django.test import Client

from chatbots.models import Membership
from chatbots.presence import presence_touch
from tests.factories import Personas

pytestmark = pytest.mark.django_db


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _membership(personas: Personas, user) -> Membership:
    return Membership.objects.get(workspace=personas.workspace, user=user)


def test_the_sidebar_shows_the_chosen_status_and_its_form_stores_a_new_one(personas: Personas) -> None:
    client = _client(personas.teammate)
    page = client.get("/dashboard/conversations/").content.decode()
    assert "data-availability-select" in page
    assert '<option value="online" selected>Online</option>' in page
    response = client.post("/dashboard/availability/", {"availability": "away", "next": "/dashboard/conversations/"})
    assert response.status_code == 302 and response["Location"] == "/dashboard/conversations/"
    assert _membership(personas, personas.teammate).availability == "away"
    assert '<option value="away" selected>Away</option>' in client.get("/dashboard/").content.decode()


def test_the_plain_form_refuses_a_bad_value_with_a_message_and_never_leaves_the_site(personas: Personas) -> None:
    client = _client(personas.teammate)
    response = client.post("/dashboard/availability/", {"availability": "busy", "next": "https://evil.example/"})
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    page = client.get("/dashboard/").content.decode()
    assert "Availability must be one of: online, away, offline." in page
    assert _membership(personas, personas.teammate).availability == "online"


def test_the_online_now_list_shows_names_statuses_and_capacity(personas: Personas) -> None:
    teammate = _membership(personas, personas.teammate)
    teammate.max_live_chats = 3
    teammate.save()
    presence_touch(workspace_id=personas.workspace.pk, user_id=personas.teammate.pk, socket_id="t")
    client = _client(personas.owner)
    page = client.get("/dashboard/conversations/").content.decode()
    assert "Online now" in page
    fragment = client.get("/dashboard/team/presence/").content.decode()
    assert "1 of 2 online" in fragment
    assert f'data-member="{personas.teammate.pk}" data-status="online"' in fragment
    assert "Online · 0 / 3 chats" in fragment
    assert f'data-member="{personas.owner.pk}" data-status="offline"' in fragment  # no console open
    assert "outsider" not in fragment  # another workspace's member


def test_owners_set_capacity_on_the_overview_and_agents_cannot(personas: Personas) -> None:
    teammate = _membership(personas, personas.teammate)
    owner_page = _client(personas.owner).get("/dashboard/").content.decode()
    assert f'action="/dashboard/team/{teammate.pk}/capacity/"' in owner_page
    assert 'name="max_live_chats"' not in _client(personas.teammate).get("/dashboard/").content.decode()

    owner = _client(personas.owner)
    response = owner.post(f"/dashboard/team/{teammate.pk}/capacity/", {"max_live_chats": "2"})
    assert response.status_code == 302
    teammate.refresh_from_db()
    assert teammate.max_live_chats == 2
    assert "Max live chats for teammate: 2." in owner.get("/dashboard/").content.decode()

    owner.post(f"/dashboard/team/{teammate.pk}/capacity/", {"max_live_chats": "zero"})
    assert "whole number from 1 to 100" in owner.get("/dashboard/").content.decode()
    owner.post(f"/dashboard/team/{teammate.pk}/capacity/", {"max_live_chats": ""})
    teammate.refresh_from_db()
    assert teammate.max_live_chats is None

    agent = _client(personas.teammate)
    agent.post(f"/dashboard/team/{teammate.pk}/capacity/", {"max_live_chats": "9"})
    assert "Only workspace owners and admins" in agent.get("/dashboard/").content.decode()
    teammate.refresh_from_db()
    assert teammate.max_live_chats is None


def test_capacity_of_another_workspaces_member_is_404(personas: Personas) -> None:
    outsider = Membership.objects.get(workspace=personas.other_workspace, user=personas.outsider)
    response = _client(personas.owner).post(f"/dashboard/team/{outsider.pk}/capacity/", {"max_live_chats": "2"})
    assert response.status_code == 404
    outsider.refresh_from_db()
    assert outsider.max_live_chats is None


def test_the_plain_form_says_so_when_the_status_changes_too_often(personas: Personas) -> None:
    from chatbots.availability import AVAILABILITY_CHANGES_PER_MINUTE

    client = _client(personas.teammate)
    for n in range(AVAILABILITY_CHANGES_PER_MINUTE):
        client.post("/dashboard/availability/", {"availability": ("away", "online")[n % 2]})
    response = client.post("/dashboard/availability/", {"availability": "offline", "next": "/dashboard/"})
    assert response.status_code == 302 and response["Location"] == "/dashboard/"
    assert "changing your status too often" in client.get("/dashboard/").content.decode()
    assert _membership(personas, personas.teammate).availability != "offline"
