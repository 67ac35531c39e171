"""Canned replies: the service's rules, the placeholders, the dashboard pages (who may do what, another
workspace's replies invisible, escaped output) and the composer's read endpoint."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from canned.models import CannedReply
from canned.placeholders import canned_fill, placeholders_unknown
from canned.selectors import CANNED_REPLIES_MAX
from canned.services import canned_reply_create, canned_reply_update
from chatbots.models import Membership
from chatbots.services import membership_add
from conversations.models import Conversation
from pivra.errors import DomainError
from tests.factories import Personas, make_user
from tests.handoff_helpers import new_visitor

pytestmark = pytest.mark.django_db


def _client(user: User) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _reply(personas: Personas, shortcut: str = "hello", text: str = "Hi {{visitor.name}}!") -> CannedReply:
    return canned_reply_create(
        workspace=personas.workspace, shortcut=shortcut, title="Greeting", text=text, created_by=personas.owner
    )


def test_a_shortcut_is_a_slug_unique_per_workspace(personas: Personas) -> None:
    reply = _reply(personas, shortcut="/Refund-Policy")
    assert reply.shortcut == "refund-policy"  # a leading slash and capitals are forgiven
    with pytest.raises(DomainError) as taken:
        _reply(personas, shortcut="refund-policy")
    assert (taken.value.code, taken.value.status) == ("shortcut_taken", 409)
    # Another workspace may use the same shortcut.
    canned_reply_create(
        workspace=personas.other_workspace, shortcut="refund-policy", title="", text="x", created_by=None
    )
    for bad in ("", "-x", "two words", "ünï", "a" * 41, "a/b"):
        with pytest.raises(DomainError) as refused:
            _reply(personas, shortcut=bad)
        assert refused.value.code == "invalid_shortcut"


def test_text_is_required_bounded_and_only_known_placeholders_are_allowed(personas: Personas) -> None:
    assert len(_reply(personas, shortcut="long", text="y" * 2000).text) == 2000  # PIVRA_MESSAGE_MAX_LENGTH
    cases = [("", "invalid_text"), ("y" * 2001, "invalid_text"), ("Hi {{visitor.password}}", "unknown_placeholder")]
    for text, code in cases:
        with pytest.raises(DomainError) as refused:
            _reply(personas, shortcut="x", text=text)
        assert refused.value.code == code
    assert "{{visitor.password}}" in str(refused.value.detail) and "{{visitor.name}}" in refused.value.detail
    assert placeholders_unknown("{{ visitor.email }} {{agent.name}} {{__class__}} {{}}") == ["__class__", ""]


def test_an_update_keeps_its_own_shortcut_and_refuses_a_colleagues(personas: Personas) -> None:
    first, second = _reply(personas, shortcut="one"), _reply(personas, shortcut="two")
    canned_reply_update(reply=first, shortcut="one", title="New title", text="Changed")
    first.refresh_from_db()
    assert (first.title, first.text) == ("New title", "Changed")
    with pytest.raises(DomainError) as taken:
        canned_reply_update(reply=second, shortcut="one", title="", text="x")
    assert taken.value.code == "shortcut_taken"


def test_placeholders_are_filled_once_and_unknown_or_empty_ones_become_empty() -> None:
    values = {"visitor.name": "{{agent.name}}", "agent.name": "Alice", "visitor.email": ""}
    text = "Hi {{visitor.name}} ({{ visitor.email }}), I am {{agent.name}}{{nope}}."
    assert canned_fill(text=text, values=values) == "Hi {{agent.name}} (), I am Alice."


def test_owners_and_admins_manage_replies_on_the_dashboard(personas: Personas) -> None:
    client = _client(personas.owner)
    form = {"shortcut": "hours", "title": "Opening hours", "text": "We're open 9-5, {{visitor.name}}."}
    created = client.post("/dashboard/canned-replies/new/", form)
    assert created.status_code == 302
    reply = CannedReply.objects.get(workspace=personas.workspace, shortcut="hours")
    listing = client.get("/dashboard/canned-replies/").content.decode()
    assert "/hours" in listing and "Opening hours" in listing
    edited = client.post(f"/dashboard/canned-replies/{reply.pk}/edit/", {**form, "text": "Changed"})
    assert edited.status_code == 302
    reply.refresh_from_db()
    assert reply.text == "Changed"
    assert client.post(f"/dashboard/canned-replies/{reply.pk}/delete/").status_code == 302
    assert not CannedReply.objects.exists()

    admin = make_user("admin")
    membership_add(workspace=personas.workspace, user=admin, role=Membership.Role.ADMIN)
    assert _client(admin).post("/dashboard/canned-replies/new/", form).status_code == 302


def test_the_sidebar_links_the_page(personas: Personas) -> None:
    html = _client(personas.teammate).get("/dashboard/conversations/").content.decode()
    assert 'href="/dashboard/canned-replies/"' in html


def test_agents_see_the_list_but_cannot_change_it(personas: Personas) -> None:
    reply = _reply(personas)
    client = _client(personas.teammate)
    page = client.get("/dashboard/canned-replies/")
    assert page.status_code == 200 and "/hello" in page.content.decode()
    assert "Edit" not in page.content.decode().split("<tbody>")[1]
    for url in ("/dashboard/canned-replies/new/", f"/dashboard/canned-replies/{reply.pk}/edit/"):
        assert client.get(url).status_code == 403
        assert client.post(url, {"shortcut": "x", "text": "y"}).status_code == 403
    assert client.post(f"/dashboard/canned-replies/{reply.pk}/delete/").status_code == 403
    assert CannedReply.objects.filter(pk=reply.pk, text="Hi {{visitor.name}}!").exists()


def test_another_workspaces_replies_are_invisible(personas: Personas) -> None:
    theirs = canned_reply_create(
        workspace=personas.other_workspace, shortcut="secret", title="", text="Their secret text", created_by=None
    )
    client = _client(personas.owner)
    assert "Their secret text" not in client.get("/dashboard/canned-replies/").content.decode()
    for url in (f"/dashboard/canned-replies/{theirs.pk}/edit/", f"/dashboard/canned-replies/{theirs.pk}/delete/"):
        assert client.get(url).status_code == 404
        assert client.post(url, {"shortcut": "mine", "text": "x"}).status_code == 404
    theirs.refresh_from_db()
    assert theirs.text == "Their secret text"


def test_the_form_shows_each_refusal_under_its_field(personas: Personas) -> None:
    _reply(personas, shortcut="taken")
    client = _client(personas.owner)
    taken = client.post("/dashboard/canned-replies/new/", {"shortcut": "taken", "text": "x"}).content.decode()
    assert "/taken is already a reply in this workspace" in taken and 'id="shortcut-error"' in taken
    unknown = client.post("/dashboard/canned-replies/new/", {"shortcut": "ok", "text": "{{visitor.ssn}}"})
    html = unknown.content.decode()
    assert unknown.status_code == 200 and "Unknown placeholder {{visitor.ssn}}" in html and 'id="text-error"' in html
    bad = client.post("/dashboard/canned-replies/new/", {"shortcut": "no way", "text": "x"}).content.decode()
    assert "lower-case letters, digits or dashes" in bad
    assert CannedReply.objects.count() == 1


def test_reply_text_is_escaped_on_the_page(personas: Personas) -> None:
    _reply(personas, shortcut="xss", text="<script>alert(1)</script><img src=x onerror=alert(2)>")
    html = _client(personas.teammate).get("/dashboard/canned-replies/").content.decode()
    assert "&lt;script&gt;alert(1)&lt;/script&gt;&lt;img" in html and "<img src=x" not in html


def _conversation(personas: Personas, lead: dict[str, str]) -> Conversation:
    _, conversation = new_visitor(personas.chatbot)
    conversation.lead = lead
    conversation.save()
    return conversation


def test_the_composer_endpoint_fills_the_replies_for_the_conversation(personas: Personas) -> None:
    personas.teammate.first_name = "Tina"
    personas.teammate.save()
    _reply(
        personas,
        shortcut="greet",
        text="Hi {{visitor.name}}, we'll call {{visitor.mobile}} ({{visitor.email}}). "
        "{{agent.name}} at {{workspace.name}}",
    )
    conversation = _conversation(personas, {"phone": "+447700900123", "name": "<b>Bob</b>"})
    url = f"/api/console/conversations/{conversation.public_id}/canned-replies"
    body = _client(personas.teammate).get(url).json()
    assert body == [
        {
            "id": body[0]["id"],
            "shortcut": "greet",
            "title": "Greeting",
            # Plain text: the page inserts it as the textarea's value, never as HTML.
            "text": "Hi <b>Bob</b>, we'll call +447700900123 (). Tina at Acme",
            # The composer warns: no email known; its caret waits in the gap.
            "missing": ["visitor.email"],
            "gap_at": len("Hi <b>Bob</b>, we'll call +447700900123 ("),
        }
    ]
    outsider = _client(personas.outsider).get(url)
    assert (outsider.status_code, outsider.json()["code"]) == (404, "conversation_not_found")
    assert Client().get(url).status_code == 401


def test_the_composer_endpoint_never_lists_another_workspaces_replies(personas: Personas) -> None:
    canned_reply_create(workspace=personas.other_workspace, shortcut="theirs", title="", text="x", created_by=None)
    _reply(personas, shortcut="ours")
    conversation = _conversation(personas, {})
    body = _client(personas.owner).get(f"/api/console/conversations/{conversation.public_id}/canned-replies").json()
    assert [r["shortcut"] for r in body] == ["ours"]
    assert body[0]["text"] == "Hi !"


def test_the_text_limit_is_the_message_limit_read_at_call_time(personas: Personas, settings: Any) -> None:
    settings.MESSAGE_MAX_LENGTH = 300
    assert len(_reply(personas, shortcut="fits", text="y" * 300).text) == 300
    with pytest.raises(DomainError) as refused:
        _reply(personas, shortcut="over", text="y" * 301)
    assert refused.value.code == "invalid_text" and "at most 300" in refused.value.detail
    html = _client(personas.owner).get("/dashboard/canned-replies/new/").content.decode()
    assert 'maxlength="300"' in html and "Up to 300 characters" in html
    posted = _client(personas.owner).post("/dashboard/canned-replies/new/", {"shortcut": "form", "text": "y" * 301})
    assert posted.status_code == 200 and not CannedReply.objects.filter(shortcut="form").exists()


@pytest.mark.parametrize(
    "text",
    [
        "Hi {{visitor.name}",  # unclosed
        "Hi {{ {{visitor.name}} }}",  # nested
        "Hi {{" + "x" * 61 + "}}",  # too long to be a placeholder
        "Hi }} there",
        "{{visitor.name}}}}",
    ],
)
def test_stray_braces_are_refused_as_unknown_placeholders(personas: Personas, text: str) -> None:
    with pytest.raises(DomainError) as refused:
        _reply(personas, shortcut="braces", text=text)
    assert refused.value.code == "unknown_placeholder"
    assert not CannedReply.objects.exists()


def test_a_single_brace_or_a_placeholder_in_braces_is_fine(personas: Personas) -> None:
    assert _reply(personas, shortcut="one", text="Use {x} or {{{visitor.name}}}").text.startswith("Use {x}")


def test_a_workspace_holds_at_most_the_cap_and_the_composer_lists_at_most_that(personas: Personas) -> None:
    CannedReply.objects.bulk_create(
        CannedReply(workspace=personas.workspace, shortcut=f"r{i:03}", text="x") for i in range(CANNED_REPLIES_MAX)
    )
    with pytest.raises(DomainError) as refused:
        _reply(personas, shortcut="one-more")
    assert (refused.value.code, refused.value.status) == ("too_many_replies", 409)
    form = _client(personas.owner).post("/dashboard/canned-replies/new/", {"shortcut": "form", "text": "x"})
    assert form.status_code == 200 and f"at most {CANNED_REPLIES_MAX} canned replies" in form.content.decode()
    # Another workspace is not bound by ours.
    canned_reply_create(workspace=personas.other_workspace, shortcut="theirs", title="", text="x", created_by=None)
    # Rows over the cap (written before it existed) are not all sent to the composer.
    CannedReply.objects.create(workspace=personas.workspace, shortcut="zzz", text="x")
    conversation = _conversation(personas, {})
    body = _client(personas.owner).get(f"/api/console/conversations/{conversation.public_id}/canned-replies").json()
    assert len(body) == CANNED_REPLIES_MAX


def test_an_update_of_a_reply_deleted_meanwhile_is_not_found_and_never_recreated(
    personas: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    stale = _reply(personas, shortcut="gone")
    CannedReply.objects.filter(pk=stale.pk).delete()
    with pytest.raises(DomainError) as refused:
        canned_reply_update(reply=stale, shortcut="gone", title="", text="changed")
    assert (refused.value.code, refused.value.status) == ("canned_reply_not_found", 404)
    assert not CannedReply.objects.exists()
    # On the page: loaded, then deleted by someone else before the save.
    from canned import views

    monkeypatch.setattr(views, "canned_reply_for_workspace", lambda **_: stale)
    page = _client(personas.owner).post(
        f"/dashboard/canned-replies/{stale.pk}/edit/", {"shortcut": "gone", "text": "y"}
    )
    assert page.status_code == 200 and "deleted in the meantime" in page.content.decode()
    assert not CannedReply.objects.exists()
