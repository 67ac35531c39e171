"""``seed_demo``: demo data on an empty database, passwords set only on users it creates, printed
only when just created, and never a fixed password for an https site."""

from __future__ import annotations

import io
import os
import re

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError, SystemCheckError
from django.db import connection
from django.test import override_settings

from chatbots.demo import DEMO_PASSWORD_CHECK_TAG, KNOWN_DEMO_PASSWORD
from chatbots.models import Workspace
from pivra import stack
from tests.factories import make_user

pytestmark = pytest.mark.django_db
PRINTED_LOGIN = re.compile(r"(?:Staff|Agent) login\s+(\S+) / (\S+)")


def _seed(*args: str) -> str:
    out = io.StringIO()
    call_command("seed_demo", *args, stdout=out)
    return out.getvalue()


def test_a_fresh_database_gets_a_random_password_per_user_printed_once() -> None:
    first = _seed("--if-empty")
    logins = dict(PRINTED_LOGIN.findall(first))
    assert set(logins) == {"admin", "alice", "bob"}
    assert len(set(logins.values())) == 3 and all(len(p) >= 16 for p in logins.values())
    for username, password in logins.items():
        assert User.objects.get(username=username).check_password(password)
    assert User.objects.get(username="admin").is_superuser

    again = _seed()  # a refresh of the demo data, as --demo asks: no login created, none printed
    assert PRINTED_LOGIN.findall(again) == [] and "kept their passwords" in again
    assert _seed("--if-empty").startswith("Existing data kept")
    for username, password in logins.items():
        assert User.objects.get(username=username).check_password(password)


def test_an_existing_password_is_never_reset_and_a_missing_demo_user_is_added() -> None:
    admin = User.objects.create_user("admin", "admin@example.com", "the-owners-own-pass")
    printed = _seed("--password", "demo-pass-12")
    assert PRINTED_LOGIN.findall(printed) == [("alice", "demo-pass-12"), ("bob", "demo-pass-12")]
    admin.refresh_from_db()
    assert admin.check_password("the-owners-own-pass") and not admin.is_staff  # left exactly as it was
    assert Workspace.objects.filter(slug="demo").exists()


def test_if_empty_leaves_a_database_with_users_alone() -> None:
    make_user("someone")
    printed = _seed("--if-empty", "--password", "demo-pass-12")
    assert printed.startswith("Existing data kept") and PRINTED_LOGIN.findall(printed) == []
    assert not User.objects.filter(username__in=["admin", "alice", "bob"]).exists()
    assert not Workspace.objects.exists()


@override_settings(PUBLIC_URL="https://chat.example.com")
@pytest.mark.parametrize("password", ["pivra-demo", "any-fixed-pass"])
def test_a_fixed_password_is_refused_for_an_https_site(password: str) -> None:
    with pytest.raises(CommandError, match="refused when PIVRA_PUBLIC_URL is https"):
        _seed("--password", password)
    assert not User.objects.exists()
    assert PRINTED_LOGIN.findall(_seed()) != []  # random passwords are fine there


# --- an upgraded install whose demo logins still have the old published password ------------------


def _check_demo_passwords() -> None:
    call_command("check", "--deploy", "--tag", DEMO_PASSWORD_CHECK_TAG, stdout=io.StringIO(), stderr=io.StringIO())


@override_settings(PUBLIC_URL="https://chat.example.com")
def test_the_deploy_check_finds_a_demo_login_that_kept_the_published_password() -> None:
    make_user("admin", password=KNOWN_DEMO_PASSWORD)
    make_user("alice", password="alice-changed-it-1")
    with pytest.raises(SystemCheckError, match=r"pivra\.E010.*'admin'.*manage\.py changepassword admin") as raised:
        _check_demo_passwords()
    assert "alice" not in str(raised.value)


@pytest.mark.parametrize("case", ["http site", "changed", "inactive", "not a demo username"])
def test_the_deploy_check_passes_otherwise(case: str) -> None:
    url = "http://127.0.0.1:8000" if case == "http site" else "https://chat.example.com"
    username = "carol" if case == "not a demo username" else "admin"
    user = make_user(username, password="admin-changed-it-1" if case == "changed" else KNOWN_DEMO_PASSWORD)
    if case == "inactive":
        User.objects.filter(pk=user.pk).update(is_active=False)
    with override_settings(PUBLIC_URL=url):
        _check_demo_passwords()  # raises on any error


def test_the_run_commands_tag_is_the_checks() -> None:
    assert stack.DEMO_PASSWORD_CHECK_TAG == DEMO_PASSWORD_CHECK_TAG


@pytest.mark.django_db(transaction=True)  # committed: the check runs in a manage.py process
def test_the_run_command_refuses_to_start_an_https_site_with_the_demo_password() -> None:
    db = connection.settings_dict
    env = {
        **os.environ,
        "PIVRA_DATABASE_URL": f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        "PIVRA_PUBLIC_URL": "https://chat.example.com",
    }
    admin = make_user("admin", password=KNOWN_DEMO_PASSWORD)
    with pytest.raises(stack.StackError) as refused:
        stack.refuse_known_demo_password(env=env)
    message = str(refused.value)
    assert message.startswith("refusing to start: ") and "manage.py changepassword admin" in message
    assert "\n" not in message

    admin.set_password("the-owners-own-pass")
    admin.save()
    stack.refuse_known_demo_password(env=env)  # starts now
