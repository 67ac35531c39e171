"""Tenant secrets are write-only and encrypted at rest: the chatbot's AI key, webhook signing
secrets and Slack URLs never appear in admin or dashboard pages, the database holds ciphertext,
keys rotate with ``rotate_secrets``, and a reveal-once secret never sits in the session table."""

from __future__ import annotations

import importlib
import io
from types import SimpleNamespace
from typing import Any

import pytest
from cryptography.fernet import Fernet
from django.conf import settings as django_settings
from django.contrib.sessions.models import Session
from django.core import checks
from django.core.management import call_command
from django.db import connection
from django.test import Client
from django.urls import reverse
from django.utils import timezone

from actions.deliveries import delivery_attempt
from actions.models import Action, Delivery
from actions.services import action_create, action_send_test
from chatbots.models import Chatbot
from chatbots.responders import ResponderError, responder_for
from pivra import crypto
from tests.factories import Personas, chatbot_admin_form

pytestmark = pytest.mark.django_db

AI_KEY = "sk-tenant-very-secret-9f8e7d6c5b4a"
SLACK_URL = "https://hooks.slack.com/services/T000/B000/XyZsecretTokenAbCd"


def _stored(table: str, column: str, pk: int) -> str:
    with connection.cursor() as cursor:
        cursor.execute(f'SELECT "{column}" FROM "{table}" WHERE id = %s', [pk])
        return str(cursor.fetchone()[0])


def _with_key(bot: Chatbot) -> Chatbot:
    Chatbot.objects.filter(pk=bot.pk).update(llm_api_key=AI_KEY, ai_provider=Chatbot.Provider.OPENAI)
    bot.refresh_from_db()
    return bot


def _webhook(personas: Personas, **fields: Any) -> Action:
    values = {"name": "CRM", "kind": Action.Kind.WEBHOOK, "url": "https://crm.example.com/hook", **fields}
    return action_create(
        workspace=personas.workspace, chatbot=personas.chatbot, events=["conversation.escalated"], **values
    )


# --- ciphertext in the database ------------------------------------------------------------------


def test_the_ai_key_column_holds_ciphertext_and_reads_back_as_plaintext(personas: Personas) -> None:
    bot = _with_key(personas.chatbot)
    stored = _stored("chatbots_chatbot", "llm_api_key", bot.pk)
    assert stored.startswith(crypto.PREFIX) and AI_KEY not in stored
    assert Chatbot.objects.get(pk=bot.pk).llm_api_key == AI_KEY


def test_webhook_secrets_and_slack_urls_are_ciphertext_at_rest(personas: Personas) -> None:
    webhook = _webhook(personas)
    slack = _webhook(personas, name="Team", kind=Action.Kind.SLACK, url=SLACK_URL)
    secret = _stored("actions_action", "secret", webhook.pk)
    assert secret.startswith(crypto.PREFIX) and webhook.secret not in secret
    assert Action.objects.get(pk=webhook.pk).secret == webhook.secret
    url = _stored("actions_action", "url", slack.pk)
    assert url.startswith(crypto.PREFIX) and "XyZsecret" not in url
    assert Action.objects.get(pk=slack.pk).url == SLACK_URL


# --- never shown again ----------------------------------------------------------------------------


def test_admin_and_dashboard_pages_never_contain_the_ai_key(
    client: Client, staff_user: Any, personas: Personas
) -> None:
    bot = _with_key(personas.chatbot)
    client.force_login(staff_user)
    admin_page = client.get(reverse("admin:chatbots_chatbot_change", args=[bot.pk])).content.decode()
    assert AI_KEY not in admin_page and "•••• set" in admin_page
    assert AI_KEY not in client.get(reverse("admin:chatbots_chatbot_changelist")).content.decode()
    workspace_page = client.get(reverse("admin:chatbots_workspace_change", args=[bot.workspace_id]))
    assert AI_KEY not in workspace_page.content.decode()

    client.force_login(personas.owner)
    settings_page = client.get(reverse("dashboard:chatbot-settings")).content.decode()
    assert AI_KEY not in settings_page and "•••• set" in settings_page


def test_an_empty_key_field_keeps_the_key_and_remove_clears_it(
    client: Client, staff_user: Any, personas: Personas
) -> None:
    bot = _with_key(personas.chatbot)
    client.force_login(staff_user)
    change = reverse("admin:chatbots_chatbot_change", args=[bot.pk])
    assert client.post(change, chatbot_admin_form(bot, ai_provider="openai", llm_api_key="")).status_code == 302
    bot.refresh_from_db()
    assert bot.llm_api_key == AI_KEY
    form = chatbot_admin_form(bot, ai_provider="openai", clear_llm_api_key="on")
    assert client.post(change, form).status_code == 302
    bot.refresh_from_db()
    assert bot.llm_api_key == ""

    bot = _with_key(bot)
    Chatbot.objects.filter(pk=bot.pk).update(llm_base_url="https://api.example.com/v1")  # the key's own URL
    client.force_login(personas.owner)
    general = {
        "section": "general",
        "chatbot": str(bot.pk),
        "name": bot.name,
        "greeting": bot.greeting,
        "accent_color": bot.accent_color,
        "ai_provider": "openai",
        "llm_base_url": "https://api.example.com/v1",
        "llm_model": "m",
        "llm_api_key": "",
        "fallback_message": bot.fallback_message,
    }
    page = reverse("dashboard:chatbot-settings")
    assert client.post(page, general).status_code == 302
    bot.refresh_from_db()
    assert bot.llm_api_key == AI_KEY  # left empty: kept
    assert client.post(page, {**general, "llm_api_key": "sk-new"}).status_code == 302
    bot.refresh_from_db()
    assert bot.llm_api_key == "sk-new"
    assert client.post(page, {**general, "clear_llm_api_key": "on"}).status_code == 302
    bot.refresh_from_db()
    assert bot.llm_api_key == ""


def test_a_slack_url_is_masked_everywhere_and_kept_when_left_empty(
    client: Client, staff_user: Any, personas: Personas
) -> None:
    slack = _webhook(personas, name="Team", kind=Action.Kind.SLACK, url=SLACK_URL)
    client.force_login(personas.owner)
    for name, args in (("actions", []), ("action-detail", [slack.pk]), ("action-edit", [slack.pk])):
        page = client.get(reverse(f"dashboard:{name}", args=args)).content.decode()
        assert "XyZsecretToken" not in page, name
    assert "hooks.slack.com/…AbCd" in client.get(reverse("dashboard:action-detail", args=[slack.pk])).content.decode()

    edit = {"name": "Team 2", "events": ["lead.captured"], "url": "", "recipients": ""}
    assert client.post(reverse("dashboard:action-edit", args=[slack.pk]), edit).status_code == 302
    slack.refresh_from_db()
    assert slack.name == "Team 2" and slack.url == SLACK_URL

    client.force_login(staff_user)
    admin_page = client.get(reverse("admin:actions_action_change", args=[slack.pk])).content.decode()
    assert "XyZsecretToken" not in admin_page
    form = {"name": "Team 3", "events": ["lead.captured"], "url": "", "recipients": ""}
    assert client.post(reverse("admin:actions_action_change", args=[slack.pk]), form).status_code == 302
    slack.refresh_from_db()
    assert slack.name == "Team 3" and slack.url == SLACK_URL


def test_a_webhook_url_is_masked_everywhere_and_kept_when_left_empty(
    client: Client, staff_user: Any, personas: Personas
) -> None:
    webhook = _webhook(personas, url="https://hooks.example.com/catch/123/capabilityTokenWxyz")
    client.force_login(personas.owner)
    for name, args in (("actions", []), ("action-detail", [webhook.pk]), ("action-edit", [webhook.pk])):
        page = client.get(reverse(f"dashboard:{name}", args=args)).content.decode()
        assert "capabilityToken" not in page, name
    assert (
        "https://hooks.example.com/…Wxyz"
        in client.get(reverse("dashboard:action-detail", args=[webhook.pk])).content.decode()
    )

    edit = {"name": "CRM 2", "events": ["lead.captured"], "url": "", "recipients": ""}
    assert client.post(reverse("dashboard:action-edit", args=[webhook.pk]), edit).status_code == 302
    webhook.refresh_from_db()
    assert webhook.name == "CRM 2" and webhook.url.endswith("capabilityTokenWxyz")

    client.force_login(staff_user)
    admin_page = client.get(reverse("admin:actions_action_change", args=[webhook.pk])).content.decode()
    assert "capabilityToken" not in admin_page and "hooks.example.com/…Wxyz" in admin_page
    form = {"name": "CRM 3", "events": ["lead.captured"], "url": "", "recipients": ""}
    assert client.post(reverse("admin:actions_action_change", args=[webhook.pk]), form).status_code == 302
    webhook.refresh_from_db()
    assert webhook.name == "CRM 3" and webhook.url.endswith("capabilityTokenWxyz")
    changed = {**form, "url": "https://crm.example.com/new"}
    assert client.post(reverse("admin:actions_action_change", args=[webhook.pk]), changed).status_code == 302
    webhook.refresh_from_db()
    assert webhook.url == "https://crm.example.com/new"


def test_the_admin_never_shows_a_webhook_secret(client: Client, staff_user: Any, personas: Personas) -> None:
    webhook = _webhook(personas)
    client.force_login(staff_user)
    page = client.get(reverse("admin:actions_action_change", args=[webhook.pk])).content.decode()
    assert webhook.secret not in page and webhook.secret[-4:] in page


# --- reveal once, never in the session table -----------------------------------------------------


def _sessions_text() -> str:
    return " ".join(str(s.get_decoded()) + s.session_data for s in Session.objects.all())


def test_a_new_webhook_secret_is_shown_once_and_never_stored_in_the_session(client: Client, personas: Personas) -> None:
    client.force_login(personas.owner)
    form = {
        "chatbot": personas.chatbot.pk,
        "name": "CRM",
        "kind": "webhook",
        "events": ["conversation.escalated"],
        "url": "https://crm.example.com/hook",
    }
    created = client.post(reverse("dashboard:action-create"), form)
    action = Action.objects.get()
    assert action.secret not in _sessions_text() and action.secret not in str(dict(client.session))

    page = client.get(created["Location"])
    assert action.secret in page.content.decode() and page["Cache-Control"] == "no-store"
    assert action.secret not in client.get(created["Location"]).content.decode()  # once

    rotated = client.post(reverse("dashboard:action-rotate-secret", args=[action.pk]))
    action.refresh_from_db()
    assert action.secret not in _sessions_text() and action.secret not in str(dict(client.session))
    # Someone else holding the link sees nothing; the owner still can, once.
    other = Client()
    other.force_login(personas.teammate)
    assert action.secret not in other.get(rotated["Location"]).content.decode()
    assert action.secret in client.get(rotated["Location"]).content.decode()


def test_the_migration_removes_old_plaintext_reveal_secrets_from_sessions(personas: Personas) -> None:
    from django.apps import apps

    migration = importlib.import_module("actions.migrations.0004_drop_revealed_secrets_from_sessions")
    store_class = importlib.import_module(django_settings.SESSION_ENGINE).SessionStore
    leaked = store_class()
    leaked.update(
        {"_auth_user_id": "1", "pivra_actions_reveal": {"action": 1, "secret": "whsec_OLDplain", "new": True}}
    )
    leaked.create()
    clean = store_class()
    clean.update({"_auth_user_id": "2"})
    clean.create()
    Session.objects.create(session_key="x" * 32, session_data="not decodable", expire_date=timezone.now())
    assert "whsec_OLDplain" in _sessions_text()

    migration.drop_reveal_key(apps, SimpleNamespace(connection=connection))

    assert "whsec_OLDplain" not in " ".join(
        s.session_data + str(s.get_decoded()) for s in Session.objects.exclude(pk="x" * 32)
    )
    assert store_class(session_key=leaked.session_key).load() == {"_auth_user_id": "1"}
    assert store_class(session_key=clean.session_key).load() == {"_auth_user_id": "2"}
    assert Session.objects.get(pk="x" * 32).session_data == "not decodable"


# --- rotation ----------------------------------------------------------------------------------


def test_rotate_secrets_moves_every_row_to_the_first_key(personas: Personas, settings: Any) -> None:
    old, new = Fernet.generate_key().decode(), Fernet.generate_key().decode()
    settings.ENCRYPTION_KEYS = [old]
    bot = _with_key(personas.chatbot)
    webhook = _webhook(personas)
    # A row written before encryption existed, still plaintext.
    with connection.cursor() as cursor:
        cursor.execute("UPDATE actions_action SET url = %s WHERE id = %s", ["https://legacy.example/hook", webhook.pk])
    assert Action.objects.get(pk=webhook.pk).url == "https://legacy.example/hook"

    settings.ENCRYPTION_KEYS = [new, old]  # new key first: it encrypts, both decrypt
    assert Chatbot.objects.get(pk=bot.pk).llm_api_key == AI_KEY
    out = io.StringIO()
    call_command("rotate_secrets", stdout=out)
    assert "row(s) now under the first key" in out.getvalue()

    for table, column, pk in (
        ("chatbots_chatbot", "llm_api_key", bot.pk),
        ("actions_action", "secret", webhook.pk),
        ("actions_action", "url", webhook.pk),
    ):
        stored = _stored(table, column, pk)
        assert stored.startswith(crypto.PREFIX), column
        Fernet(new.encode()).decrypt(stored[len(crypto.PREFIX) :].encode())  # readable with the new key alone

    settings.ENCRYPTION_KEYS = [new]  # the old key can go, and no derived key is needed either
    settings.SECRET_KEY = "x" * 50
    assert Chatbot.objects.get(pk=bot.pk).llm_api_key == AI_KEY
    assert Action.objects.get(pk=webhook.pk).url == "https://legacy.example/hook"
    assert Action.objects.get(pk=webhook.pk).secret == webhook.secret


def test_a_removed_key_gives_a_clear_error(personas: Personas, settings: Any) -> None:
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    bot = _with_key(personas.chatbot)
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    settings.SECRET_KEY = "y" * 50
    with pytest.raises(crypto.SecretUnreadable, match="PIVRA_ENCRYPTION_KEYS"):
        crypto.secret_decrypt(_stored("chatbots_chatbot", "llm_api_key", bot.pk))


# --- an unreadable secret fails where it is used, never the whole site ----------------------------


@pytest.fixture
def key_removed(personas: Personas, settings: Any) -> tuple[Chatbot, Action, Action]:
    """A chatbot key, a webhook action and a Slack action stored under a key that is then removed."""
    settings.WEBHOOK_ALLOW_PRIVATE = True
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    bot = _with_key(personas.chatbot)
    Chatbot.objects.filter(pk=bot.pk).update(llm_base_url="https://api.example.com/v1")
    webhook = _webhook(personas)
    slack = _webhook(personas, name="Team", kind=Action.Kind.SLACK, url=SLACK_URL)
    settings.ENCRYPTION_KEYS = [Fernet.generate_key().decode()]
    settings.SECRET_KEY = "y" * 50  # no fallback: the derived key is gone too
    return bot, webhook, slack


def test_rows_under_a_removed_key_still_load_and_pages_still_work(
    client: Client, staff_user: Any, key_removed: tuple[Chatbot, Action, Action]
) -> None:
    bot, webhook, slack = key_removed
    loaded = Chatbot.objects.get(pk=bot.pk)
    assert crypto.secret_unreadable(loaded.llm_api_key) and not loaded.llm_api_key
    assert crypto.secret_unreadable(Action.objects.get(pk=webhook.pk).secret)

    frame = client.get(reverse("widget-frame", args=[bot.public_key]), {"origin": "http://testserver"})
    assert frame.status_code == 200
    owner = bot.workspace.memberships.get(role="owner").user
    client.force_login(owner)
    settings_page = client.get(reverse("dashboard:chatbot-settings"))
    assert settings_page.status_code == 200 and "cannot be decrypted" in settings_page.content.decode()
    for name, args in (("actions", []), ("action-detail", [webhook.pk]), ("action-edit", [slack.pk])):
        assert client.get(reverse(f"dashboard:{name}", args=args)).status_code == 200, name
    client.force_login(staff_user)
    assert client.get(reverse("admin:chatbots_chatbot_change", args=[bot.pk])).status_code == 200
    assert client.get(reverse("admin:actions_action_change", args=[webhook.pk])).status_code == 200


def test_saving_a_row_keeps_the_unreadable_ciphertext(key_removed: tuple[Chatbot, Action, Action]) -> None:
    bot, webhook, _ = key_removed
    before = _stored("chatbots_chatbot", "llm_api_key", bot.pk), _stored("actions_action", "secret", webhook.pk)
    loaded = Chatbot.objects.get(pk=bot.pk)
    loaded.name = "Renamed"
    loaded.save()
    action = Action.objects.get(pk=webhook.pk)
    action.name = "Renamed"
    action.save()
    after = _stored("chatbots_chatbot", "llm_api_key", bot.pk), _stored("actions_action", "secret", webhook.pk)
    assert after == before  # the old key, put back, still recovers both


def test_the_ai_reply_fails_gracefully_with_a_clear_reason(
    settings: Any, key_removed: tuple[Chatbot, Action, Action]
) -> None:
    bot, _, _ = key_removed
    settings.LLM_API_KEY = "sk-platform-must-not-be-used"
    with pytest.raises(ResponderError, match="cannot be decrypted"):
        list(responder_for(Chatbot.objects.get(pk=bot.pk)).stream(question="Hi", history=[]))


def test_a_delivery_with_an_unreadable_secret_fails_for_good(key_removed: tuple[Chatbot, Action, Action]) -> None:
    _, webhook, _ = key_removed
    delivery = action_send_test(action=Action.objects.get(pk=webhook.pk))
    attempt = delivery_attempt(delivery_id=delivery.pk)
    assert attempt is not None and "cannot be decrypted" in attempt.error
    delivery.refresh_from_db()
    assert delivery.status == Delivery.Status.FAILED and delivery.next_attempt_at is None


def test_the_system_check_reports_unreadable_secrets(key_removed: tuple[Chatbot, Action, Action]) -> None:
    errors = [
        m
        for m in checks.run_checks(tags=[checks.Tags.security], include_deployment_checks=True)
        if m.id == "pivra.E020"
    ]
    assert sorted(e.msg.split(" stored ")[1].split(" value")[0] for e in errors) == [
        "actions.Action.secret",
        "actions.Action.url",
        "chatbots.Chatbot.llm_api_key",
    ]


def test_the_system_check_is_quiet_when_every_secret_decrypts(personas: Personas) -> None:
    _with_key(personas.chatbot)
    _webhook(personas)
    assert [
        m
        for m in checks.run_checks(tags=[checks.Tags.security], include_deployment_checks=True)
        if m.id == "pivra.E020"
    ] == []


def test_the_data_migrations_encrypt_existing_plaintext_rows(personas: Personas) -> None:
    from django.apps import apps

    chatbots_migration = importlib.import_module("chatbots.migrations.0003_encrypt_llm_api_key")
    actions_migration = importlib.import_module("actions.migrations.0003_encrypt_secrets")
    webhook = _webhook(personas)
    plain_secret = webhook.secret
    with connection.cursor() as cursor:  # as the rows stood before the migration
        cursor.execute("UPDATE chatbots_chatbot SET llm_api_key = %s WHERE id = %s", [AI_KEY, personas.chatbot.pk])
        cursor.execute("UPDATE actions_action SET secret = %s WHERE id = %s", [plain_secret, webhook.pk])

    chatbots_migration.encrypt(apps, None)
    actions_migration.encrypt(apps, None)

    assert AI_KEY not in _stored("chatbots_chatbot", "llm_api_key", personas.chatbot.pk)
    assert _stored("actions_action", "secret", webhook.pk).startswith(crypto.PREFIX)
    assert Chatbot.objects.get(pk=personas.chatbot.pk).llm_api_key == AI_KEY
    assert Action.objects.get(pk=webhook.pk).secret == plain_secret

    actions_migration.decrypt(apps, None)  # the way back leaves plaintext for the old column type
    assert _stored("actions_action", "secret", webhook.pk) == plain_secret
