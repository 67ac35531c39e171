"""Password guessing is throttled, with axes on as in production: the login page and the admin login
per client address and per (account, address) pair after 10 failures, per account from anywhere only
after 50 (so nobody locks ``admin`` out with ten guesses), password reset mails per client address and
per email address."""

from __future__ import annotations

import itertools
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from django.core import mail
from django.core.management import call_command
from django.test import Client, override_settings

from tests.factories import Personas
from tests.login_helpers import clear_login_counters

pytestmark = pytest.mark.django_db
_addresses = (f"198.51.100.{n}" for n in itertools.count(10))
LOCKED = "Too many attempts. Try again in 15 minutes."


@pytest.fixture(autouse=True)
def _fresh_counters() -> Iterator[None]:
    """These tests fail logins on purpose: their counters must not lock out later tests (or the
    browser tests, which log in from 127.0.0.1 against the same Redis)."""

    clear_login_counters()
    yield
    clear_login_counters()


def _client(address: str | None = None) -> Client:
    return Client(REMOTE_ADDR=address or next(_addresses))


def _login(client: Client, username: str, password: str, *, path: str = "/accounts/login/"):
    return client.post(path, {"username": username, "password": password, "next": "/dashboard/"})


def _logged_in(client: Client) -> bool:
    return client.get("/dashboard/").status_code == 200


def test_the_eleventh_wrong_login_within_a_minute_is_refused_with_a_readable_page(personas: Personas) -> None:
    client = _client()
    for attempt in range(1, 10):
        refused = _login(client, "teammate", f"wrong-{attempt}")
        assert refused.status_code == 200 and "didn't match" in refused.content.decode(), attempt
    tenth = _login(client, "teammate", "wrong-10")
    assert tenth.status_code == 429  # the tenth failure is the limit: from now on, nothing is tried

    eleventh = _login(client, "teammate", "wrong-11")
    assert eleventh.status_code == 429 and LOCKED in eleventh.content.decode()
    right = _login(client, "teammate", "pass-12345")
    assert right.status_code == 429 and LOCKED in right.content.decode()
    assert 840 < int(right["Retry-After"]) <= 900
    assert not _logged_in(client)


def test_ten_failures_from_one_address_do_not_lock_the_account_out_elsewhere(personas: Personas) -> None:
    attacker = _client()
    for attempt in range(10):
        _login(attacker, "teammate", f"wrong-{attempt}")
    assert LOCKED in _login(attacker, "teammate", "pass-12345").content.decode()
    owner_elsewhere = _client()
    assert _login(owner_elsewhere, "teammate", "pass-12345").status_code == 302
    assert _logged_in(owner_elsewhere)


def test_the_pair_is_locked_even_when_the_address_guesses_other_accounts_between(personas: Personas) -> None:
    guesser = next(_addresses)
    for attempt in range(10):
        _login(_client(guesser), "teammate", f"wrong-{attempt}")
        # Its own account's login clears the address's counter, not the pair's (AXES_RESET_ON_SUCCESS).
        if attempt in (4, 8):
            own = _client(guesser)
            assert _login(own, "owner", "pass-12345").status_code == 302
    assert LOCKED in _login(_client(guesser), "teammate", "pass-12345").content.decode()


def test_an_account_is_locked_after_fifty_failures_whichever_addresses_they_come_from(personas: Personas) -> None:
    for attempt in range(50):
        assert _login(_client(), "teammate", f"wrong-{attempt}").status_code in (200, 429)
    fresh = _client()
    refused = _login(fresh, "teammate", "pass-12345")
    assert refused.status_code == 429 and LOCKED in refused.content.decode()
    assert 840 < int(refused["Retry-After"]) <= 900
    assert not _logged_in(fresh)
    # Another account, from that same fresh address, is not affected.
    assert _login(fresh, "owner", "pass-12345").status_code == 302
    assert _logged_in(fresh)


def test_a_successful_login_clears_the_counters(personas: Personas) -> None:
    address = next(_addresses)
    for attempt in range(9):
        _login(_client(address), "teammate", f"wrong-{attempt}")
    assert _login(_client(address), "teammate", "pass-12345").status_code == 302
    for attempt in range(9):  # nine more: 18 in all, under the limit again only if the login cleared them
        _login(_client(address), "teammate", f"again-{attempt}")
    client = _client(address)
    assert _login(client, "teammate", "pass-12345").status_code == 302
    assert _logged_in(client)


def test_an_address_is_locked_whichever_accounts_it_guesses(personas: Personas) -> None:
    guesser = next(_addresses)
    for attempt in range(10):
        _login(_client(guesser), f"someone-{attempt}", "wrong")
    same_address = _client(guesser)
    assert LOCKED in _login(same_address, "teammate", "pass-12345").content.decode()
    assert not _logged_in(same_address)
    elsewhere = _client()
    assert _login(elsewhere, "teammate", "pass-12345").status_code == 302


def test_a_username_that_reads_like_an_address_does_not_lock_that_address(personas: Personas) -> None:
    victim = next(_addresses)
    for _ in range(10):
        _login(_client(), victim, "wrong")
    assert _login(_client(victim), "teammate", "pass-12345").status_code == 302


def test_the_admin_login_is_throttled_too(staff_user: User) -> None:
    client = _client()
    for attempt in range(10):
        _login(client, "staff", f"wrong-{attempt}", path="/admin/login/?next=/admin/")
    refused = _login(client, "staff", "staff-pass-123", path="/admin/login/?next=/admin/")
    assert refused.status_code == 429 and LOCKED in refused.content.decode()
    assert client.get("/admin/").status_code == 302  # still sent to the admin login


def test_a_good_login_under_the_limit_still_works(personas: Personas) -> None:
    client = _client()
    for attempt in range(9):
        _login(client, "teammate", f"wrong-{attempt}")
    assert _login(client, "teammate", "pass-12345").status_code == 302
    assert _logged_in(client)


def _reset(client: Client, email: str):
    return client.post("/accounts/password_reset/", {"email": email})


@pytest.mark.parametrize("email", ["teammate@example.com", "nobody@example.com"])
def test_reset_mails_per_address_are_capped_and_the_answer_does_not_tell_who_exists(
    personas: Personas, mailoutbox: list[mail.EmailMessage], email: str
) -> None:
    for _ in range(5):
        sent = _reset(_client(), email)
        assert sent.status_code == 302 and sent["Location"] == "/accounts/password_reset/done/"
    refused = _reset(_client(), email.upper())  # one address, however it is written
    assert refused.status_code == 429
    assert "Too many reset requests. Try again in " in refused.content.decode()
    assert len(mailoutbox) == (5 if email.startswith("teammate") else 0)
    assert _reset(_client(), "owner@example.com").status_code == 302  # other addresses are unaffected


def test_reset_requests_per_client_address_are_capped(personas: Personas) -> None:
    sender = next(_addresses)
    for n in range(20):
        assert _reset(_client(sender), f"someone-{n}@example.com").status_code == 302
    refused = _reset(_client(sender), "teammate@example.com")
    assert refused.status_code == 429 and "Too many reset requests." in refused.content.decode()
    assert _reset(_client(), "teammate@example.com").status_code == 302


def test_an_operator_lifts_a_lockout_with_axes_commands(personas: Personas) -> None:
    client = _client()
    for attempt in range(10):
        _login(client, "teammate", f"wrong-{attempt}")
    assert _login(client, "teammate", "pass-12345").status_code == 429
    call_command("axes_reset_ip_username", client.defaults["REMOTE_ADDR"], "user:teammate")  # as the README says
    assert _login(client, "teammate", "pass-12345").status_code == 302


@override_settings(LOGIN_ACCOUNT_FAILURE_LIMIT=3)
def test_an_operator_lifts_an_account_lockout_with_axes_reset_username(personas: Personas) -> None:
    for attempt in range(3):
        _login(_client(), "teammate", f"wrong-{attempt}")
    assert _login(_client(), "teammate", "pass-12345").status_code == 429
    call_command("axes_reset_username", "user:teammate")  # as the README says
    assert _login(_client(), "teammate", "pass-12345").status_code == 302
