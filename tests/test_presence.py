"""Presence: console-socket leases in Redis (grace, several sockets, a killed socket), the chosen
status, capacity, the availability endpoint and Redis out of reach."""

from __future__ import annotations

import json
from unittest import mock

import pytest
import redis
from django.test import Client

from chatbots import presence
from chatbots.availability import membership_set_availability, membership_set_max_live_chats, presence_sweep
from chatbots.models import Membership
from chatbots.presence import (
    LEASE_SECONDS,
    agents_with_capacity,
    member_at_capacity,
    member_live_chat_counts,
    online_agent_ids,
    presence_release,
    presence_sweep_workspace,
    presence_touch,
    workspace_roster,
)
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from pivra.errors import Conflict, DomainError, Forbidden, NotFound
from tests.factories import Personas
from tests.handoff_helpers import new_visitor, request, say

pytestmark = pytest.mark.django_db
T0 = 1_800_000_000.0  # a controllable clock: every lease call takes ``now``
GRACE = 60


@pytest.fixture(autouse=True)
def _grace(settings) -> None:
    settings.PRESENCE_GRACE_SECONDS = GRACE


@pytest.fixture(autouse=True)
def _empty_presence() -> None:
    client = redis.Redis.from_url(presence.settings.REDIS_URL)
    for key in client.scan_iter(f"{presence.settings.CHANNEL_PREFIX}:presence:*"):
        client.delete(key)


def present(workspace_id: int, now: float) -> set[int]:
    return presence.present_user_ids(workspace_id=workspace_id, now=now)


def test_a_socket_makes_its_user_present_and_the_first_one_is_an_arrival(personas: Personas) -> None:
    ws, uid = personas.workspace.pk, personas.teammate.pk
    assert present(ws, T0) == set()
    assert presence_touch(workspace_id=ws, user_id=uid, socket_id="a", now=T0) is True
    assert present(ws, T0 + 1) == {uid}
    # A refresh, and a second tab, are not arrivals.
    assert presence_touch(workspace_id=ws, user_id=uid, socket_id="a", now=T0 + 10) is False
    assert presence_touch(workspace_id=ws, user_id=uid, socket_id="b", now=T0 + 11) is False
    # Another member's first socket is their own arrival.
    other = personas.owner.pk
    assert presence_touch(workspace_id=ws, user_id=other, socket_id="c", now=T0 + 12) is True
    assert present(personas.other_workspace.pk, T0 + 12) == set()


def test_the_last_socket_closing_leaves_the_user_online_for_the_grace_period(personas: Personas) -> None:
    ws, uid = personas.workspace.pk, personas.teammate.pk
    presence_touch(workspace_id=ws, user_id=uid, socket_id="a", now=T0)
    presence_release(workspace_id=ws, user_id=uid, socket_id="a", now=T0 + 5)
    assert present(ws, T0 + 5 + GRACE - 1) == {uid}  # a reload comes back well within this
    assert presence_sweep_workspace(workspace_id=ws, now=T0 + 5 + GRACE - 1) == set()
    assert present(ws, T0 + 5 + GRACE + 1) == set()
    assert presence_sweep_workspace(workspace_id=ws, now=T0 + 5 + GRACE + 1) == {uid}
    assert presence_sweep_workspace(workspace_id=ws, now=T0 + 5 + GRACE + 2) == set()  # announced once


def test_a_reload_within_the_grace_is_no_departure_nor_arrival(personas: Personas) -> None:
    ws, uid = personas.workspace.pk, personas.teammate.pk
    presence_touch(workspace_id=ws, user_id=uid, socket_id="old", now=T0)
    presence_release(workspace_id=ws, user_id=uid, socket_id="old", now=T0 + 1)
    assert presence_touch(workspace_id=ws, user_id=uid, socket_id="new", now=T0 + 2) is False
    assert presence_sweep_workspace(workspace_id=ws, now=T0 + 1 + GRACE + 1) == set()  # "old" dropped, "new" lives
    assert present(ws, T0 + 1 + GRACE + 1) == {uid}


def test_two_sockets_the_user_stays_while_either_is_open(personas: Personas) -> None:
    ws, uid = personas.workspace.pk, personas.teammate.pk
    presence_touch(workspace_id=ws, user_id=uid, socket_id="a", now=T0)
    presence_touch(workspace_id=ws, user_id=uid, socket_id="b", now=T0)
    presence_release(workspace_id=ws, user_id=uid, socket_id="a", now=T0 + 1)
    later = T0 + 1 + GRACE + 1
    presence_touch(workspace_id=ws, user_id=uid, socket_id="b", now=later - 5)  # "b" refreshes
    assert presence_sweep_workspace(workspace_id=ws, now=later) == set()
    assert present(ws, later) == {uid}
    presence_release(workspace_id=ws, user_id=uid, socket_id="b", now=later + 1)
    assert presence_sweep_workspace(workspace_id=ws, now=later + 1 + GRACE + 1) == {uid}


def test_a_killed_sockets_lease_runs_out_without_any_disconnect(personas: Personas) -> None:
    """The process holding the socket was SIGKILLed: no release ever comes, the lease expires."""
    ws, uid = personas.workspace.pk, personas.teammate.pk
    presence_touch(workspace_id=ws, user_id=uid, socket_id="killed", now=T0)
    assert present(ws, T0 + LEASE_SECONDS + GRACE - 1) == {uid}
    assert present(ws, T0 + LEASE_SECONDS + GRACE + 1) == set()
    assert presence_sweep_workspace(workspace_id=ws, now=T0 + LEASE_SECONDS + GRACE + 1) == {uid}


def test_a_release_after_the_sweep_does_not_bring_the_lease_back(personas: Personas) -> None:
    ws, uid = personas.workspace.pk, personas.teammate.pk
    presence_touch(workspace_id=ws, user_id=uid, socket_id="a", now=T0)
    presence_sweep_workspace(workspace_id=ws, now=T0 + LEASE_SECONDS + GRACE + 1)
    presence_release(workspace_id=ws, user_id=uid, socket_id="a", now=T0 + LEASE_SECONDS + GRACE + 2)
    assert present(ws, T0 + LEASE_SECONDS + GRACE + 2) == set()


def test_the_sweep_announces_departures_to_the_workspace_console(personas: Personas) -> None:
    ws, uid = personas.workspace.pk, personas.teammate.pk
    presence_touch(workspace_id=ws, user_id=uid, socket_id="a", now=T0)
    presence_release(workspace_id=ws, user_id=uid, socket_id="a", now=T0)
    with mock.patch("chatbots.availability.send_now_rollback_unsafe") as send:
        assert presence_sweep(now=T0 + 1) == 0
        send.assert_not_called()
        assert presence_sweep(now=T0 + GRACE + 1) == 1
    send.assert_called_once_with([f"console.{ws}"], {"type": "presence", "workspace": ws})


def _connect(personas: Personas, user_id: int, socket_id: str = "s") -> None:
    presence_touch(workspace_id=personas.workspace.pk, user_id=user_id, socket_id=socket_id)


def test_online_needs_both_the_chosen_status_and_a_socket(personas: Personas) -> None:
    ws = personas.workspace.pk
    assert online_agent_ids(workspace_id=ws) == set()  # both chose Online (the default), no socket
    _connect(personas, personas.teammate.pk)
    _connect(personas, personas.owner.pk)
    assert online_agent_ids(workspace_id=ws) == {personas.teammate.pk, personas.owner.pk}
    membership_set_availability(user=personas.owner, workspace_id=ws, availability="away")
    assert online_agent_ids(workspace_id=ws) == {personas.teammate.pk}
    roster = {m.user_id: m for m in workspace_roster(workspace_id=ws).members}
    assert roster[personas.owner.pk].status == "away"
    assert roster[personas.teammate.pk].status == "online"


def test_redis_out_of_reach_means_unknown_so_everyone_who_chose_online_counts(personas: Personas) -> None:
    ws = personas.workspace.pk
    membership_set_availability(user=personas.owner, workspace_id=ws, availability="offline")
    with mock.patch.object(presence, "shared_redis", side_effect=redis.ConnectionError("down")):
        assert online_agent_ids(workspace_id=ws) == {personas.teammate.pk}
        roster = workspace_roster(workspace_id=ws)
    assert roster.known is False
    assert {m.user_id: m.status for m in roster.members} == {
        personas.teammate.pk: "online",
        personas.owner.pk: "offline",
    }


def test_availability_refuses_a_bad_value_and_a_workspace_that_is_not_yours(personas: Personas) -> None:
    with pytest.raises(DomainError) as bad:
        membership_set_availability(user=personas.teammate, workspace_id=personas.workspace.pk, availability="busy")
    assert bad.value.code == "invalid_availability"
    with pytest.raises(NotFound):
        membership_set_availability(
            user=personas.teammate, workspace_id=personas.other_workspace.pk, availability="away"
        )


def _live_chat(personas: Personas, agent) -> None:
    visitor, conversation = new_visitor(personas.chatbot)
    say(visitor, conversation, "Hello")
    request(visitor, conversation)
    handoff_claim(agent=agent, conversation_public_id=str(conversation.public_id))


def test_capacity_counts_live_chats_and_orders_the_agents_with_room(personas: Personas, bot) -> None:
    ws = personas.workspace.pk
    _connect(personas, personas.teammate.pk)
    _connect(personas, personas.owner.pk)
    teammate = Membership.objects.get(workspace_id=ws, user=personas.teammate)
    membership_set_max_live_chats(actor=personas.owner, workspace_id=ws, membership_id=teammate.pk, max_live_chats=2)
    _live_chat(personas, personas.teammate)
    assert member_live_chat_counts(workspace_id=ws) == {personas.teammate.pk: 1}
    # Fewest live chats first: the owner (0, unlimited), then the teammate (1 of 2).
    assert agents_with_capacity(workspace_id=ws) == [personas.owner.pk, personas.teammate.pk]
    assert member_at_capacity(user_id=personas.teammate.pk, workspace_id=ws) is False
    _live_chat(personas, personas.teammate)
    assert member_at_capacity(user_id=personas.teammate.pk, workspace_id=ws) is True
    assert agents_with_capacity(workspace_id=ws) == [personas.owner.pk]
    assert member_at_capacity(user_id=personas.owner.pk, workspace_id=ws) is False  # unlimited
    roster = {m.user_id: m for m in workspace_roster(workspace_id=ws).members}
    assert (roster[personas.teammate.pk].live_chats, roster[personas.teammate.pk].max_live_chats) == (2, 2)


def test_only_owners_and_admins_set_capacity_within_bounds(personas: Personas) -> None:
    ws = personas.workspace.pk
    owner = Membership.objects.get(workspace_id=ws, user=personas.owner)
    with pytest.raises(Forbidden):
        membership_set_max_live_chats(
            actor=personas.teammate, workspace_id=ws, membership_id=owner.pk, max_live_chats=3
        )
    with pytest.raises(DomainError) as bad:
        membership_set_max_live_chats(actor=personas.owner, workspace_id=ws, membership_id=owner.pk, max_live_chats=0)
    assert bad.value.code == "invalid_capacity"
    other = Membership.objects.get(workspace=personas.other_workspace, user=personas.outsider)
    with pytest.raises(NotFound):
        membership_set_max_live_chats(actor=personas.owner, workspace_id=ws, membership_id=other.pk, max_live_chats=3)
    membership_set_max_live_chats(actor=personas.owner, workspace_id=ws, membership_id=owner.pk, max_live_chats=None)
    owner.refresh_from_db()
    assert owner.max_live_chats is None


# --- the endpoint ------------------------------------------------------------------------------------


def _client(user) -> Client:
    client = Client(enforce_csrf_checks=False)
    client.force_login(user)
    return client


def _put(client: Client, workspace_id: int, body: object):
    return client.put(
        f"/api/console/workspaces/{workspace_id}/availability", data=json.dumps(body), content_type="application/json"
    )


def test_the_endpoint_stores_the_choice_and_says_the_effective_status(personas: Personas) -> None:
    ws = personas.workspace.pk
    client = _client(personas.teammate)
    response = _put(client, ws, {"availability": "away"})
    assert response.status_code == 200, response.content
    assert response.json() == {"workspace": ws, "availability": "away", "status": "offline"}  # no socket open
    assert Membership.objects.get(workspace_id=ws, user=personas.teammate).availability == "away"
    _connect(personas, personas.teammate.pk)
    assert _put(client, ws, {"availability": "away"}).json()["status"] == "away"


def test_the_endpoint_refuses_a_bad_value_with_code_and_detail(personas: Personas) -> None:
    response = _put(_client(personas.teammate), personas.workspace.pk, {"availability": "busy"})
    assert response.status_code == 400
    assert response.json()["code"] == "invalid_availability"
    assert "online, away, offline" in response.json()["detail"]
    assert Membership.objects.get(workspace=personas.workspace, user=personas.teammate).availability == "online"


def test_the_endpoint_answers_404_for_another_workspace(personas: Personas) -> None:
    response = _put(_client(personas.teammate), personas.other_workspace.pk, {"availability": "away"})
    assert response.status_code == 404
    assert set(response.json()) == {"code", "detail"}
    assert Membership.objects.get(workspace=personas.other_workspace).availability == "online"


def test_the_endpoint_needs_a_signed_in_user(personas: Personas) -> None:
    response = _put(Client(), personas.workspace.pk, {"availability": "away"})
    assert response.status_code == 401
    assert response.json()["code"] == "not_authenticated"


def test_a_claim_past_capacity_is_refused_with_over_capacity(personas: Personas, bot) -> None:
    ws = personas.workspace.pk
    teammate = Membership.objects.get(workspace_id=ws, user=personas.teammate)
    membership_set_max_live_chats(actor=personas.owner, workspace_id=ws, membership_id=teammate.pk, max_live_chats=1)
    _live_chat(personas, personas.teammate)
    visitor, conversation = new_visitor(personas.chatbot)
    say(visitor, conversation, "Anyone?")
    request(visitor, conversation)
    key = str(conversation.public_id)
    with pytest.raises(Conflict) as refused:
        handoff_claim(agent=personas.teammate, conversation_public_id=key)
    assert refused.value.code == "over_capacity"
    response = _client(personas.teammate).post(f"/api/console/handoffs/{key}/claim")
    assert response.status_code == 409
    assert response.json() == {"code": "over_capacity", "detail": refused.value.detail}
    assert Handoff.objects.get(conversation=conversation).status == Handoff.Status.PENDING
    handoff_claim(agent=personas.owner, conversation_public_id=key)  # unlimited
    # Someone else's chat is "already claimed", whatever the caller's capacity.
    with pytest.raises(Conflict) as taken:
        handoff_claim(agent=personas.teammate, conversation_public_id=key)
    assert taken.value.code == "already_claimed"


def test_the_beat_schedule_runs_the_presence_sweep(settings) -> None:
    from pivra.celery import app

    entry = app.conf.beat_schedule["presence-sweep"]
    assert entry["task"] == "chatbots.tasks.sweep_presence"
    assert entry["schedule"] == settings.PRESENCE_SWEEP_SECONDS
    app.loader.import_default_modules()  # what a worker does at start: autodiscovery of <app>.tasks
    assert "chatbots.tasks.sweep_presence" in app.tasks


def test_a_user_holds_at_most_the_cap_of_console_sockets(personas: Personas) -> None:
    uid = personas.teammate.pk
    for n in range(presence.MAX_SOCKETS_PER_USER):
        assert presence.presence_admit(user_id=uid, socket_id=f"s{n}", now=T0) is True
    assert presence.presence_admit(user_id=uid, socket_id="extra", now=T0) is False
    assert presence.presence_admit(user_id=uid, socket_id="s0", now=T0 + 5) is True  # a refresh keeps its place
    assert presence.presence_admit(user_id=personas.owner.pk, socket_id="extra", now=T0) is True  # per user
    presence.presence_dismiss(user_id=uid, socket_id="s1")  # a closed tab frees its place at once
    assert presence.presence_admit(user_id=uid, socket_id="extra", now=T0 + 6) is True
    # A killed socket (never dismissed) stops counting when its lease runs out without a refresh.
    assert presence.presence_admit(user_id=uid, socket_id="late", now=T0 + 7) is False
    assert presence.presence_admit(user_id=uid, socket_id="late", now=T0 + LEASE_SECONDS + 1) is True


def test_a_refresh_reads_only_its_own_users_leases(personas: Personas) -> None:
    """Arrival is decided from the user's own set: many teammates' sockets do not change the answer
    (nor the work: the script touches no other key of the workspace)."""
    ws, uid = personas.workspace.pk, personas.teammate.pk
    for n in range(50):
        presence_touch(workspace_id=ws, user_id=personas.owner.pk, socket_id=f"o{n}", now=T0)
    assert presence_touch(workspace_id=ws, user_id=uid, socket_id="a", now=T0) is True
    assert presence_touch(workspace_id=ws, user_id=uid, socket_id="a", now=T0 + 10) is False
    assert present(ws, T0 + 10) == {uid, personas.owner.pk}
    client = redis.Redis.from_url(presence.settings.REDIS_URL)
    assert client.zcard(f"{presence.settings.CHANNEL_PREFIX}:presence:{ws}") == 2  # one entry per member


def test_availability_changes_are_rate_limited_per_user_with_code_and_detail(personas: Personas) -> None:
    """Each change makes every teammate's page re-read its list: a loop of changes is refused."""
    from chatbots.availability import AVAILABILITY_CHANGES_PER_MINUTE

    ws = personas.workspace.pk
    client = _client(personas.teammate)
    for n in range(AVAILABILITY_CHANGES_PER_MINUTE):
        assert _put(client, ws, {"availability": ("away", "online")[n % 2]}).status_code == 200
    response = _put(client, ws, {"availability": "offline"})
    assert response.status_code == 429
    body = response.json()
    assert body["code"] == "rate_limited" and "changing your status too often" in body["detail"]
    assert int(response["Retry-After"]) >= 1
    assert Membership.objects.get(workspace_id=ws, user=personas.teammate).availability != "offline"
    assert _put(_client(personas.owner), ws, {"availability": "away"}).status_code == 200  # per user
