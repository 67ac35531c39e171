"""Web Push after review: only the browsers' push services are dialled, a subscription is only its
user's and ends with their session, a queued push is tied to its recipient, only permanent failures
count, message pushes coalesce, and a notification's link never switches workspace from another site."""

from __future__ import annotations

import json
import threading
import uuid
from datetime import timedelta
from pathlib import Path
from typing import Any
from unittest import mock

import pytest
from django.contrib.auth.models import User
from django.contrib.sessions.models import Session
from django.test import Client
from django.utils import timezone

from chatbots.models import Chatbot, Membership
from chatbots.selectors import SESSION_WORKSPACE_KEY
from conversations.models import Event
from handoff.models import Handoff
from handoff.transitions.claim import handoff_claim
from notifications.models import PushSubscription
from notifications.notices import handoff_notice, message_notice
from notifications.services import agent_notify, push_subscription_deliver
from notifications.vapid import vapid_keys
from notifications.webpush import FAILED, GONE, LATER, MAX_FAILURES, SENT, push_payload, push_request, push_send
from pivra import outbound
from pivra.widget.tokens import visitor_token
from tests.attachment_helpers import filesystem_storages, png_bytes, upload
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request
from tests.push_helpers import BrowserKeys
from tests.test_actions_support import Receiver, Reply

pytestmark = pytest.mark.django_db

URL = "/api/console/push-subscriptions"
FCM = "https://fcm.googleapis.com/fcm/send/"
PAYLOAD = push_payload(kind="handoff", conversation_public_id="c1", title="t", body="b", url="/dashboard/")


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _post(client: Client, body: object):
    return client.post(URL, json.dumps(body), content_type="application/json")


def _subscription(user: User, endpoint: str, keys: BrowserKeys | None = None) -> PushSubscription:
    keys = keys or BrowserKeys()
    return PushSubscription.objects.create(user=user, endpoint=endpoint, p256dh=keys.p256dh, auth=keys.auth)


# --- saving ----------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "endpoint",
    [
        "https://push.example.com/x",  # not a push service of the list
        "https://fcm.googleapis.com:8443/x",  # not the default port
        "http://fcm.googleapis.com/x",  # not https
        "https://fcm.googleapis.com.evil.example/x",
        "https://push.services.mozilla.com.evil.example/x",
        "https://evilpush.services.mozilla.com/x",  # a wildcard means a subdomain, not a suffix
    ],
)
def test_only_the_listed_push_services_can_be_saved(personas: Personas, endpoint: str) -> None:
    response = _post(_client(personas.teammate), BrowserKeys().subscription_json(endpoint))
    assert (response.status_code, response.json()["code"]) == (400, "invalid_subscription"), response.content
    assert not PushSubscription.objects.exists()


@pytest.mark.parametrize(
    "endpoint",
    [
        FCM + "abc:def",
        "https://updates.push.services.mozilla.com/wpush/v2/gAAA",
        "https://wns2-par02p.notify.windows.com/w/?token=BQYAAA",
        "https://web.push.apple.com/QGx",
    ],
)
def test_the_browsers_push_services_are_accepted(personas: Personas, endpoint: str) -> None:
    assert _post(_client(personas.teammate), BrowserKeys().subscription_json(endpoint)).status_code == 201


def test_the_list_of_push_services_is_configurable(personas: Personas, settings) -> None:
    settings.WEB_PUSH_HOSTS = ("push.example.com",)
    client = _client(personas.teammate)
    assert _post(client, BrowserKeys().subscription_json("https://push.example.com/x")).status_code == 201
    assert _post(client, BrowserKeys().subscription_json(FCM + "x")).status_code == 400


def test_a_long_non_ascii_endpoint_is_refused_not_a_server_error(personas: Personas) -> None:
    response = _post(_client(personas.teammate), BrowserKeys().subscription_json(FCM + "漢" * 960))
    assert response.status_code in (400, 422), response.content
    assert set(response.json()) == {"code", "detail"}
    assert not PushSubscription.objects.exists()


def test_a_user_of_no_workspace_cannot_subscribe(personas: Personas) -> None:
    loner = User.objects.create_user("loner", password="x" * 12)
    response = _post(_client(loner), BrowserKeys().subscription_json(FCM + "loner"))
    assert (response.status_code, response.json()["code"]) == (403, "no_workspace")
    assert not PushSubscription.objects.exists()


def test_knowing_someones_endpoint_takes_nothing_over(personas: Personas) -> None:
    theirs = BrowserKeys().subscription_json(FCM + "victim")
    assert _post(_client(personas.teammate), theirs).status_code == 201
    original = PushSubscription.objects.get()
    mine = BrowserKeys().subscription_json(FCM + "victim")  # the same endpoint, other keys
    refused = _post(_client(personas.owner), mine)
    assert (refused.status_code, refused.json()["code"]) == (409, "endpoint_taken")
    assert PushSubscription.objects.get() == original and original.user == personas.teammate
    # The same browser (the same keys) signed in as someone else: theirs now, as a new row.
    assert _post(_client(personas.owner), theirs).status_code == 201
    moved = PushSubscription.objects.get()
    assert moved.user == personas.owner and moved.pk != original.pk


def test_a_push_queued_before_the_endpoint_moved_never_reaches_the_new_user(personas: Personas) -> None:
    body = BrowserKeys().subscription_json(FCM + "shared")
    _post(_client(personas.teammate), body)
    queued_for = PushSubscription.objects.get()
    _post(_client(personas.owner), body)
    now_owners = PushSubscription.objects.get()
    with mock.patch("notifications.services.push_send") as send:
        # Whatever id the queued task names, it is sent only if the row is still its recipient's.
        for subscription_id in (queued_for.pk, now_owners.pk):
            result = push_subscription_deliver(
                subscription_id=subscription_id,
                user_id=personas.teammate.pk,
                workspace_id=personas.workspace.pk,
                kind="handoff",
                payload="{}",
            )
            assert result == "gone"
    assert send.call_count == 0


# --- the session ------------------------------------------------------------------------------------------


def test_a_subscription_ends_when_its_session_expires(personas: Personas) -> None:
    client = _client(personas.teammate)
    assert _post(client, BrowserKeys().subscription_json(FCM + "expiring")).status_code == 201
    row = PushSubscription.objects.get()
    assert row.session_expires_at == Session.objects.get(session_key=client.session.session_key).expire_date
    deliver: dict[str, Any] = {"user_id": personas.teammate.pk, "workspace_id": personas.workspace.pk}
    deliver.update(kind="handoff", payload="{}")
    with mock.patch("notifications.services.push_send", return_value=SENT) as send:
        assert push_subscription_deliver(subscription_id=row.pk, **deliver) == SENT
        PushSubscription.objects.update(session_expires_at=timezone.now() - timedelta(seconds=1))
        assert push_subscription_deliver(subscription_id=row.pk, **deliver) == "expired"
    assert send.call_count == 1
    assert not PushSubscription.objects.exists()


def test_a_password_change_or_deactivation_ends_every_subscription_of_the_user(personas: Personas) -> None:
    _subscription(personas.teammate, FCM + "a")
    _subscription(personas.teammate, FCM + "b")
    _subscription(personas.owner, FCM + "c")
    personas.teammate.set_password("a new password 123")
    personas.teammate.save()
    assert list(PushSubscription.objects.values_list("endpoint", flat=True)) == [FCM + "c"]
    personas.owner.last_login = timezone.now()
    personas.owner.save()  # not a change that ends a session
    assert PushSubscription.objects.count() == 1
    personas.owner.is_active = False
    personas.owner.save()
    assert not PushSubscription.objects.exists()


def test_a_push_is_not_sent_to_someone_who_left_the_workspace(personas: Personas) -> None:
    row = _subscription(personas.teammate, FCM + "left")
    Membership.objects.filter(user=personas.teammate, workspace=personas.workspace).delete()
    with mock.patch("notifications.services.push_send") as send:
        result = push_subscription_deliver(
            subscription_id=row.pk,
            user_id=personas.teammate.pk,
            workspace_id=personas.workspace.pk,
            kind="handoff",
            payload="{}",
        )
    assert result == "not_member" and send.call_count == 0


# --- sending ----------------------------------------------------------------------------------------------


def test_an_endpoint_off_the_list_is_never_dialled(personas: Personas, settings) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = settings.WEBHOOK_ALLOW_PRIVATE = True
    row = _subscription(personas.teammate, "https://push.example.com/old-row")  # saved before the list
    with mock.patch.object(outbound, "http_post") as post:
        assert push_send(subscription=row, payload=PAYLOAD, kind="handoff") == FAILED
    assert post.call_count == 0


def test_plain_http_is_never_dialled_unless_private_addresses_are_allowed(personas: Personas, settings) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = settings.WEBHOOK_ALLOW_PRIVATE = False
    settings.WEB_PUSH_HOSTS = ("fcm.googleapis.com",)
    row = _subscription(personas.teammate, "http://fcm.googleapis.com/x")
    with mock.patch.object(outbound, "http_post") as post:
        assert push_send(subscription=row, payload=PAYLOAD, kind="handoff") == FAILED
    assert post.call_count == 0


@pytest.mark.parametrize(
    ("reply", "result", "failures"),
    [
        (Reply(status=500), LATER, 0),
        (Reply(status=503), LATER, 0),
        (Reply(status=429), LATER, 0),
        (Reply(status=401), LATER, 0),  # the server's VAPID key, not this subscription
        (Reply(status=403, body=b'{"reason":"invalid JWT provided / VAPID key mismatch"}'), LATER, 0),
        (Reply(status=403, body=b"forbidden"), FAILED, 1),
        (Reply(status=400), FAILED, 1),
        (Reply(status=413), FAILED, 1),
    ],
)
def test_only_the_subscriptions_own_permanent_failures_count(
    personas: Personas, settings, reply: Reply, result: str, failures: int
) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver(reply) as receiver:
        row = _subscription(personas.teammate, receiver.url)
        assert push_send(subscription=row, payload=PAYLOAD, kind="handoff") == result
    assert PushSubscription.objects.get().failures == failures


@pytest.mark.parametrize("error", [outbound.ResolutionFailed(), outbound.httpx.ConnectTimeout("slow")])
def test_dns_failures_and_timeouts_never_count(personas: Personas, error: Exception) -> None:
    row = _subscription(personas.teammate, FCM + "x")
    PushSubscription.objects.update(failures=MAX_FAILURES - 1)
    with mock.patch.object(outbound, "http_post", side_effect=error):
        assert push_send(subscription=row, payload=PAYLOAD, kind="handoff") == LATER
    assert PushSubscription.objects.get().failures == MAX_FAILURES - 1


def test_permanent_failures_in_a_row_delete_and_410_deletes_at_once(personas: Personas, settings) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver(*[Reply(status=400)] * MAX_FAILURES) as receiver:
        row = _subscription(personas.teammate, receiver.url)
        for _ in range(MAX_FAILURES):
            push_send(subscription=row, payload=PAYLOAD, kind="handoff")
    assert not PushSubscription.objects.exists()
    with Receiver(Reply(status=410)) as receiver:
        row = _subscription(personas.teammate, receiver.url)
        assert push_send(subscription=row, payload=PAYLOAD, kind="handoff") == GONE
    assert not PushSubscription.objects.exists()


def test_message_pushes_are_normal_urgency_and_the_rest_high(personas: Personas) -> None:
    row = _subscription(personas.teammate, FCM + "u", BrowserKeys())
    assert push_request(subscription=row, payload=PAYLOAD, kind="message")[1]["Urgency"] == "normal"
    assert push_request(subscription=row, payload=PAYLOAD, kind="handoff")[1]["Urgency"] == "high"


# --- fan-out ----------------------------------------------------------------------------------------------


def _notify(personas: Personas, user_ids: list[int], *, kind: str = "message", conversation: str = "") -> tuple:
    with (
        mock.patch("notifications.services.send_now_rollback_unsafe") as frames,
        mock.patch("notifications.services.current_app.send_task") as tasks,
    ):
        agent_notify(
            user_ids=user_ids,
            kind=kind,
            workspace_id=personas.workspace.pk,
            conversation_public_id=conversation or str(uuid.uuid4()),
            title="t",
            body="b",
        )
    return frames, tasks


def test_message_pushes_coalesce_per_conversation_and_agent_but_frames_do_not(personas: Personas) -> None:
    _subscription(personas.teammate, FCM + "chatty")
    conversation = str(uuid.uuid4())
    first = _notify(personas, [personas.teammate.pk], conversation=conversation)
    second = _notify(personas, [personas.teammate.pk], conversation=conversation)
    other = _notify(personas, [personas.teammate.pk])  # another conversation
    assert [f.call_count for f, _ in (first, second, other)] == [1, 1, 1]
    assert [t.call_count for _, t in (first, second, other)] == [1, 0, 1]
    args = first[1].call_args.kwargs["args"]
    assert args[1:3] == [personas.teammate.pk, personas.workspace.pk]


def test_one_frame_publish_for_all_recipients_and_only_members_of_that_workspace(personas: Personas) -> None:
    _subscription(personas.outsider, FCM + "outsider")
    frames, tasks = _notify(personas, [personas.teammate.pk, personas.owner.pk, personas.outsider.pk], kind="handoff")
    assert frames.call_count == 1
    groups = frames.call_args.args[0]
    assert sorted(groups) == sorted(f"console-user.{u.pk}" for u in (personas.teammate, personas.owner))
    assert tasks.call_count == 0  # the outsider's subscription is never queued


# --- handoff notices --------------------------------------------------------------------------------------


def test_a_team_busy_handoff_tells_nobody_and_round_robin_tells_the_offered_agent(personas: Personas) -> None:
    bot = enable_handoff(personas.chatbot)
    visitor, conversation = new_visitor(bot)
    handoff = request(visitor, conversation)
    everyone = handoff_notice(conversation_id=conversation.pk)
    assert everyone is not None and personas.teammate.pk in everyone.user_ids and len(everyone.user_ids) > 1
    Handoff.objects.filter(pk=handoff.pk).update(offered_to=personas.teammate, offer_kind="route")
    offered = handoff_notice(conversation_id=conversation.pk)
    assert offered is not None and offered.user_ids == (personas.teammate.pk,)
    Handoff.objects.filter(pk=handoff.pk).update(status=Handoff.Status.BUSY, offered_to=None, offer_kind="")
    assert handoff_notice(conversation_id=conversation.pk) is None


# --- the notification's link ----------------------------------------------------------------------------


def test_a_cross_site_link_does_not_switch_the_workspace_without_a_post(personas: Personas) -> None:
    _, conversation = new_visitor(personas.chatbot)
    url = f"/dashboard/notifications/open/{conversation.public_id}/"
    client = _client(personas.teammate)
    cases: list[dict[str, Any]] = [
        {"HTTP_SEC_FETCH_SITE": "cross-site"},
        {"HTTP_REFERER": "https://evil.example/x"},
        {},
    ]
    for headers in cases:
        page = client.get(url, **headers)
        assert page.status_code == 200
        assert "Open in workspace" in page.content.decode()
        assert SESSION_WORKSPACE_KEY not in client.session
    csrf_client = Client(enforce_csrf_checks=True)
    csrf_client.force_login(personas.teammate)
    assert csrf_client.post(url).status_code == 403  # the button's POST is CSRF-checked
    assert client.post(url).status_code == 302
    assert client.session[SESSION_WORKSPACE_KEY] == personas.workspace.pk


@pytest.mark.parametrize("headers", [{"HTTP_SEC_FETCH_SITE": "same-origin"}, {"HTTP_SEC_FETCH_SITE": "none"}])
def test_the_sites_own_click_switches_at_once(personas: Personas, headers: dict[str, Any]) -> None:
    _, conversation = new_visitor(personas.chatbot)
    client = _client(personas.teammate)
    response = client.get(f"/dashboard/notifications/open/{conversation.public_id}/", **headers)
    assert response.status_code == 302
    assert client.session[SESSION_WORKSPACE_KEY] == personas.workspace.pk


# --- the VAPID key file ----------------------------------------------------------------------------------


def test_processes_starting_at_once_share_one_private_key(tmp_path: Path) -> None:
    results: list[tuple[str, str]] = []
    start = threading.Barrier(8)

    def boot() -> None:
        start.wait()
        results.append(vapid_keys(private="", public="", data_dir=tmp_path))

    threads = [threading.Thread(target=boot) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 8 and len(set(results)) == 1
    assert (tmp_path / "vapid_private_key").stat().st_mode & 0o777 == 0o600
    assert [p.name for p in tmp_path.iterdir()] == ["vapid_private_key"]  # no temporary left behind


def _queued_notices(send_task: mock.MagicMock) -> list[list[object]]:
    return [c.kwargs["args"] for c in send_task.call_args_list if c.args[0] == "notifications.tasks.agent_notify"]


def test_a_skip_the_wait_request_queues_no_notice(personas: Personas, django_capture_on_commit_callbacks) -> None:
    bot = enable_handoff(personas.chatbot)
    Chatbot.objects.filter(pk=bot.pk).update(handoff_skip_wait_when_offline=True)  # and nobody is online
    bot.refresh_from_db()
    visitor, conversation = new_visitor(bot)
    with (
        mock.patch("notifications.services.current_app.send_task") as send_task,
        django_capture_on_commit_callbacks(execute=True),
    ):
        handoff = request(visitor, conversation)
    assert handoff.status == Handoff.Status.BUSY
    assert _queued_notices(send_task) == []


def test_a_visitors_attachment_in_a_live_chat_tells_the_agent_holding_it(
    personas: Personas, settings, tmp_path: Path, django_capture_on_commit_callbacks
) -> None:
    settings.STORAGES = filesystem_storages(tmp_path / "media")
    bot = enable_handoff(personas.chatbot)
    visitor, conversation = new_visitor(bot)
    request(visitor, conversation)
    handoff_claim(agent=personas.teammate, conversation_public_id=str(conversation.public_id))
    client = Client(HTTP_AUTHORIZATION=f"Bearer {visitor_token(visitor)}")
    with (
        mock.patch("notifications.services.current_app.send_task") as send_task,
        django_capture_on_commit_callbacks(execute=True),
    ):
        response = client.post("/api/widget/attachments", {"client_id": "a1", "file": upload("p.png", png_bytes())})
    assert response.status_code == 200, response.content
    event = Event.objects.get(conversation=conversation, client_id="a1")
    assert _queued_notices(send_task) == [["message", conversation.pk, event.pk]]
    notice = message_notice(conversation_id=conversation.pk, event_id=event.pk)
    assert notice is not None and notice.user_ids == (personas.teammate.pk,)
