"""Web Push: subscriptions saved per user through the console API (CSRF, validation, a cap, logout),
the send through the outbound door (SSRF refused, 410 deletes, failures counted), the service worker
script and the notification's click target, and the VAPID configuration."""

from __future__ import annotations

import json
import logging
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.test import Client

from conversations.models import Conversation
from notifications.models import PushSubscription
from notifications.subscriptions import MAX_SUBSCRIPTIONS_PER_USER
from notifications.vapid import generate_private_key, private_key_from_raw, public_key_of, vapid_keys, vapid_subject
from notifications.webpush import FAILED, GONE, MAX_FAILURES, SENT, push_payload, push_send
from tests.factories import Personas
from tests.handoff_helpers import new_visitor
from tests.push_helpers import BrowserKeys, vapid_key_of
from tests.test_actions_support import Receiver, Reply

pytestmark = pytest.mark.django_db

URL = "/api/console/push-subscriptions"


def _client(user, *, csrf: bool = False) -> Client:
    client = Client(enforce_csrf_checks=csrf)
    client.force_login(user)
    return client


def _post(client: Client, body: object):
    return client.post(URL, json.dumps(body), content_type="application/json")


def test_a_subscription_is_saved_once_per_browser_for_the_signed_in_agent(personas: Personas) -> None:
    keys = BrowserKeys()
    body = keys.subscription_json("https://fcm.googleapis.com/fcm/send/abc:def")
    client = _client(personas.teammate)
    first = _post(client, body)
    assert first.status_code == 201, first.content
    again = _post(client, body)
    assert (again.status_code, again.json()["created"]) == (200, False)
    row = PushSubscription.objects.get()
    assert (row.user, row.p256dh, row.auth) == (personas.teammate, keys.p256dh, keys.auth)
    assert row.session_digest  # the session that subscribed, as a digest
    assert row.session_digest != client.session.session_key

    # The same browser signed in as someone else now tells that someone.
    assert _post(_client(personas.owner), body).status_code == 201
    assert PushSubscription.objects.get().user == personas.owner


def test_saving_needs_the_csrf_token_and_a_session(personas: Personas) -> None:
    body = BrowserKeys().subscription_json("https://fcm.googleapis.com/x")
    refused = _post(_client(personas.teammate, csrf=True), body)
    assert refused.status_code == 403
    assert set(refused.json()) == {"code", "detail"}
    assert _post(Client(), body).status_code == 401
    assert not PushSubscription.objects.exists()


@pytest.mark.parametrize(
    ("endpoint", "p256dh", "auth"),
    [
        ("http://fcm.googleapis.com/x", None, None),  # not https
        ("https://127.0.0.1/x", None, None),  # loopback
        ("https://10.1.2.3/x", None, None),  # private
        ("https://[::1]/x", None, None),
        ("https://169.254.169.254/latest", None, None),  # cloud metadata
        ("https://user@fcm.googleapis.com/x", None, None),
        ("https://localhost/x", None, None),
        ("https://fcm.googleapis.com/" + "x" * 1000, None, None),
        ("https://fcm.googleapis.com/x", "BAAA", None),  # not a P-256 point
        ("https://fcm.googleapis.com/x", None, "c2hvcnQ"),  # not 16 bytes
        ("https://fcm.googleapis.com/x", "not base64!", None),
    ],
)
def test_a_bad_subscription_is_refused_with_a_readable_error(personas: Personas, endpoint, p256dh, auth) -> None:
    body = BrowserKeys().subscription_json(endpoint)
    body["keys"]["p256dh"] = p256dh or body["keys"]["p256dh"]
    body["keys"]["auth"] = auth or body["keys"]["auth"]
    response = _post(_client(personas.teammate), body)
    assert response.status_code in (400, 422), response.content
    assert set(response.json()) == {"code", "detail"}
    assert not PushSubscription.objects.exists()


def test_loopback_endpoints_are_accepted_only_where_private_addresses_are_allowed(personas: Personas, settings) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = settings.WEBHOOK_ALLOW_PRIVATE = True
    body = BrowserKeys().subscription_json("http://127.0.0.1:9/push")
    assert _post(_client(personas.teammate), body).status_code == 201


def test_an_agent_keeps_a_bounded_number_of_subscriptions(personas: Personas) -> None:
    client = _client(personas.teammate)
    for n in range(MAX_SUBSCRIPTIONS_PER_USER + 3):
        assert _post(client, BrowserKeys().subscription_json(f"https://fcm.googleapis.com/{n}")).status_code == 201
    kept = PushSubscription.objects.filter(user=personas.teammate)
    assert kept.count() == MAX_SUBSCRIPTIONS_PER_USER
    assert not kept.filter(endpoint="https://fcm.googleapis.com/0").exists()  # the oldest went
    assert kept.filter(endpoint=f"https://fcm.googleapis.com/{MAX_SUBSCRIPTIONS_PER_USER + 2}").exists()


def test_an_agent_deletes_only_their_own_subscription(personas: Personas) -> None:
    body = BrowserKeys().subscription_json("https://fcm.googleapis.com/mine")
    _post(_client(personas.teammate), body)
    gone = _client(personas.owner).delete(
        URL, json.dumps({"endpoint": body["endpoint"]}), content_type="application/json"
    )
    assert gone.json() == {"deleted": False}
    assert PushSubscription.objects.count() == 1
    mine = _client(personas.teammate).delete(
        URL, json.dumps({"endpoint": body["endpoint"]}), content_type="application/json"
    )
    assert mine.json() == {"deleted": True}
    assert not PushSubscription.objects.exists()


def test_logging_out_forgets_the_browsers_subscribed_in_that_session(personas: Personas) -> None:
    leaving, staying = _client(personas.teammate), _client(personas.teammate)
    _post(leaving, BrowserKeys().subscription_json("https://fcm.googleapis.com/shared-pc"))
    _post(staying, BrowserKeys().subscription_json("https://fcm.googleapis.com/laptop"))
    assert leaving.post("/accounts/logout/").status_code in (200, 302)
    assert list(PushSubscription.objects.values_list("endpoint", flat=True)) == ["https://fcm.googleapis.com/laptop"]


# --- sending ----------------------------------------------------------------------------------------


def _subscription(user, endpoint: str, keys: BrowserKeys | None = None) -> PushSubscription:
    keys = keys or BrowserKeys()
    return PushSubscription.objects.create(user=user, endpoint=endpoint, p256dh=keys.p256dh, auth=keys.auth)


PAYLOAD = push_payload(
    kind="handoff", conversation_public_id="c1", title="Visitor asks", body="Help", url="/dashboard/"
)


@pytest.mark.parametrize("host", ["127.0.0.1", "10.0.0.7", "localhost"])
def test_a_private_endpoint_is_never_dialled_unless_allowed(personas: Personas, settings, host: str, caplog) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = settings.WEBHOOK_ALLOW_PRIVATE = False
    with Receiver() as receiver:
        endpoint = f"http://{host}:{receiver.port}/push/secret-path"
        # Stored behind the API's back (an old row, a changed DNS answer): the send checks again.
        subscription = _subscription(personas.teammate, endpoint)
        with caplog.at_level(logging.INFO):
            assert push_send(subscription=subscription, payload=PAYLOAD, kind="handoff") == FAILED
        assert receiver.hits == []
    subscription.refresh_from_db()
    assert subscription.failures == 1
    assert "secret-path" not in caplog.text and subscription.auth not in caplog.text
    assert "refused" in caplog.text


def test_a_push_reaches_a_loopback_endpoint_encrypted_and_signed_when_allowed(personas: Personas, settings) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = settings.WEBHOOK_ALLOW_PRIVATE = True
    keys = BrowserKeys()
    with Receiver(Reply(status=201)) as receiver:
        subscription = _subscription(personas.teammate, receiver.url, keys)
        PushSubscription.objects.filter(pk=subscription.pk).update(failures=3)
        assert push_send(subscription=subscription, payload=PAYLOAD, kind="mention") == SENT
    hit = receiver.hits[0]
    assert hit.headers["content-encoding"] == "aes128gcm"
    assert hit.headers["ttl"] == "86400"
    assert b"Visitor asks" not in hit.body  # encrypted
    assert keys.decrypt(hit.body) == json.loads(PAYLOAD)
    assert vapid_key_of(hit.headers["authorization"]) == settings.VAPID_PUBLIC_KEY
    subscription.refresh_from_db()
    assert subscription.failures == 0 and subscription.last_success_at is not None


@pytest.mark.parametrize("status", [404, 410])
def test_a_subscription_the_push_service_says_is_gone_is_deleted(personas: Personas, settings, status: int) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver(Reply(status=status)) as receiver:
        subscription = _subscription(personas.teammate, receiver.url)
        assert push_send(subscription=subscription, payload=PAYLOAD, kind="handoff") == GONE
    assert not PushSubscription.objects.exists()


def test_failures_are_counted_and_a_dead_subscription_is_dropped(personas: Personas, settings) -> None:
    settings.OUTBOUND_ALLOW_PRIVATE = settings.WEBHOOK_ALLOW_PRIVATE = True
    with Receiver(Reply(status=400), Reply(status=413)) as receiver:  # permanent: this subscription's own
        subscription = _subscription(personas.teammate, receiver.url)
        assert push_send(subscription=subscription, payload=PAYLOAD, kind="handoff") == FAILED
        assert PushSubscription.objects.get().failures == 1
        PushSubscription.objects.update(failures=MAX_FAILURES - 1)
        assert push_send(subscription=subscription, payload=PAYLOAD, kind="handoff") == FAILED
    assert len(receiver.hits) == 2
    assert not PushSubscription.objects.exists()


# --- pages ---------------------------------------------------------------------------------------------


def test_the_service_worker_is_served_for_the_dashboard_scope_and_never_cached(personas: Personas) -> None:
    response = _client(personas.teammate).get("/dashboard/sw.js")
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert response["Service-Worker-Allowed"] == "/dashboard/"
    assert "no-cache" in response["Cache-Control"]
    assert b'addEventListener("push"' in response.content
    assert Client().get("/dashboard/sw.js").status_code == 200  # a browser fetches updates without cookies too


def test_the_console_page_loads_the_notifications_script_with_the_public_key_only(personas: Personas, settings) -> None:
    page = _client(personas.teammate).get("/dashboard/").content.decode()
    assert "console/notifications.js" in page
    assert f'data-vapid-key="{settings.VAPID_PUBLIC_KEY}"' in page
    assert settings.VAPID_PRIVATE_KEY not in page
    settings.WEB_PUSH_ENABLED = False
    assert 'data-vapid-key=""' in _client(personas.teammate).get("/dashboard/").content.decode()


def test_a_notification_click_opens_the_conversation_in_its_workspace(personas: Personas) -> None:
    _, conversation = new_visitor(personas.chatbot)
    _, foreign = new_visitor(personas.other_chatbot)
    client = _client(personas.teammate)
    response = client.get(f"/dashboard/notifications/open/{conversation.public_id}/", HTTP_SEC_FETCH_SITE="none")
    assert response.status_code == 302
    assert response["Location"] == f"/dashboard/conversations/{conversation.public_id}/"
    assert client.get(f"/dashboard/notifications/open/{foreign.public_id}/").status_code == 404
    assert Conversation.objects.count() == 2


# --- configuration ---------------------------------------------------------------------------------------


def test_vapid_keys_are_generated_once_and_kept(tmp_path: Path) -> None:
    private, public = vapid_keys(private="", public="", data_dir=tmp_path)
    assert (tmp_path / "vapid_private_key").stat().st_mode & 0o777 == 0o600
    assert vapid_keys(private="", public="", data_dir=tmp_path) == (private, public)
    assert public == public_key_of(private_key_from_raw(private))


def test_configured_vapid_keys_are_checked_without_echoing_them(tmp_path: Path) -> None:
    private = generate_private_key()
    public = public_key_of(private_key_from_raw(private))
    assert vapid_keys(private=private, public=public, data_dir=tmp_path) == (private, public)
    assert not (tmp_path / "vapid_private_key").exists()
    other = public_key_of(private_key_from_raw(generate_private_key()))
    with pytest.raises(ImproperlyConfigured, match="does not belong"):
        vapid_keys(private=private, public=other, data_dir=tmp_path)
    with pytest.raises(ImproperlyConfigured) as bad:
        vapid_keys(private="secret-but-wrong", public="", data_dir=tmp_path)
    assert "secret-but-wrong" not in str(bad.value)
    with pytest.raises(ImproperlyConfigured):
        vapid_keys(private="", public=public, data_dir=tmp_path)
    assert vapid_subject(configured="", default_email="ops@example.com") == "mailto:ops@example.com"
    assert vapid_subject(configured="https://example.com", default_email="x@y") == "https://example.com"
    with pytest.raises(ImproperlyConfigured):
        vapid_subject(configured="ops@example.com", default_email="x@y")
