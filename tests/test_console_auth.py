"""Getting in and out of the dashboard: password reset by email end to end, and logout."""

from __future__ import annotations

import re

import pytest
from django.core import mail
from django.test import Client

from tests.factories import Personas

pytestmark = pytest.mark.django_db
RESET_LINK = re.compile(r"http://testserver(/accounts/reset/[\w-]+/[\w-]+/)")


def _csrf(html: str) -> str:
    found = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', html)
    assert found, "no CSRF token on the page"
    return found.group(1)


def test_a_forgotten_password_is_reset_through_our_email_and_the_new_one_logs_in(
    personas: Personas, mailoutbox: list[mail.EmailMessage]
) -> None:
    teammate = personas.teammate
    teammate.first_name = "Bob"
    teammate.save()
    client = Client()
    assert "Forgot your password?" in client.get("/accounts/login/").content.decode()
    assert "Reset your password" in client.get("/accounts/password_reset/").content.decode()

    sent = client.post("/accounts/password_reset/", {"email": "teammate@example.com"})
    assert sent.status_code == 302 and sent["Location"] == "/accounts/password_reset/done/"
    assert "Check your email" in client.get(sent["Location"]).content.decode()

    assert len(mailoutbox) == 1
    email = mailoutbox[0]
    assert email.to == ["teammate@example.com"]
    assert email.subject == "Choose a new password for your Pivra dashboard"
    assert email.body.startswith("Hi Bob,")
    assert 'your Pivra dashboard account "teammate"' in email.body
    assert "Django" not in email.body and "You're receiving this email" not in email.body  # not admin's text
    found = RESET_LINK.search(str(email.body))
    assert found, email.body

    # The link trades its token for a session-held one and lands on the set-password page.
    confirm = client.get(found.group(1))
    assert confirm.status_code == 302 and confirm["Location"].endswith("/set-password/")
    form = client.get(confirm["Location"]).content.decode()
    assert "Choose a new password" in form and 'name="new_password1"' in form
    done = client.post(confirm["Location"], {"new_password1": "a-new-pass-4821", "new_password2": "a-new-pass-4821"})
    assert done.status_code == 302 and done["Location"] == "/accounts/reset/done/"
    assert "Your password is set" in client.get(done["Location"]).content.decode()

    fresh = Client()
    assert not fresh.login(username="teammate", password="pass-12345")
    logged_in = fresh.post("/accounts/login/", {"username": "teammate", "password": "a-new-pass-4821"})
    assert logged_in.status_code == 302 and logged_in["Location"] == "/dashboard/"
    assert fresh.get("/dashboard/").status_code == 200

    # The link is spent.
    again = Client().get(found.group(1), follow=True).content.decode()
    assert "This link has expired" in again


def test_a_reset_for_an_unknown_address_says_the_same_and_sends_nothing(
    personas: Personas, mailoutbox: list[mail.EmailMessage]
) -> None:
    sent = Client().post("/accounts/password_reset/", {"email": "nobody@example.com"})
    assert sent.status_code == 302 and sent["Location"] == "/accounts/password_reset/done/"
    assert mailoutbox == []


def test_logging_out_is_a_csrf_checked_post_that_ends_the_session(personas: Personas) -> None:
    client = Client(enforce_csrf_checks=True)
    assert client.login(username="teammate", password="pass-12345")
    page = client.get("/dashboard/").content.decode()
    assert 'action="/accounts/logout/"' in page and "Log out" in page

    assert client.get("/accounts/logout/").status_code == 405  # a link or prefetch cannot log you out
    assert client.post("/accounts/logout/").status_code == 403  # nor can another site's form
    assert client.get("/dashboard/").status_code == 200  # still logged in after both

    out = client.post("/accounts/logout/", {"csrfmiddlewaretoken": _csrf(page)})
    assert out.status_code == 302 and out["Location"] == "/accounts/login/"
    assert "sessionid" not in client.cookies or not client.cookies["sessionid"].value
    after = client.get("/dashboard/conversations/")
    assert after.status_code == 302 and after["Location"].startswith("/accounts/login/")
