"""The conversation list (Open / Handoff tabs, search, filters, badges, empty states) and the
conversation page (thread as text, controls per agent, visitor details, live state endpoint)."""

from __future__ import annotations

import re
from datetime import UTC, datetime, timedelta
from html import unescape
from typing import Any
from urllib.parse import parse_qsl

import pytest
from django.test import Client
from django.utils import timezone

from conversations.models import Conversation, Visitor
from handoff.transitions.claim import handoff_claim
from handoff.transitions.lead import lead_capture
from handoff.transitions.resolve import handoff_resolve
from handoff.transitions.timers import handoff_expire
from pivra.console import views as console_views
from pivra.console.selectors import browser_from_user_agent, unclaimed_count, unclaimed_counts
from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor, request, say

pytestmark = pytest.mark.django_db


@pytest.fixture
def acme(personas: Personas) -> Personas:
    enable_handoff(personas.chatbot)
    personas.owner.first_name = "Alice"
    personas.owner.save()
    personas.teammate.first_name = "Bob"
    personas.teammate.save()
    return personas


def _client(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def _rows(client: Client, **params) -> dict[str, str]:
    """conversation id → its row's HTML, in page order."""
    html = client.get("/dashboard/conversations/", params).content.decode()
    rows: dict[str, str] = {}
    for chunk in html.split('data-conversation="')[1:]:
        key = chunk.split('"', 1)[0]
        if key and "-" in key:
            rows[key] = chunk.split('role="row"', 1)[0] if 'role="row"' in chunk else chunk
    return rows


def _handoff(personas: Personas, text: str = "I need help"):
    visitor, conversation = new_visitor(personas.chatbot)
    say(visitor, conversation, text)
    request(visitor, conversation)
    return visitor, conversation


def test_the_handoff_tab_lists_waiting_busy_and_claimed_handoffs_with_their_badges(acme: Personas) -> None:
    _, waiting = _handoff(acme, "waiting one")
    _, busy = _handoff(acme, "busy one")
    assert handoff_expire(handoff_id=busy.handoff.pk, now=timezone.now() + timedelta(hours=1))
    _, claimed = _handoff(acme, "claimed one")
    handoff_claim(agent=acme.owner, conversation_public_id=str(claimed.public_id))
    _, resolved = _handoff(acme, "resolved one")
    handoff_resolve(agent=acme.teammate, conversation_public_id=str(resolved.public_id))
    visitor, ai_only = new_visitor(acme.chatbot)
    say(visitor, ai_only, "just the AI")

    rows = _rows(_client(acme.teammate), tab="handoff")
    assert list(rows) == [str(waiting.public_id), str(busy.public_id), str(claimed.public_id)]  # unclaimed first
    assert ">Waiting<" in rows[str(waiting.public_id)]
    assert ">Team busy<" in rows[str(busy.public_id)]
    assert ">Claimed by Alice<" in rows[str(claimed.public_id)]
    assert ">Button<" in rows[str(waiting.public_id)]
    assert "data-since=" in rows[str(waiting.public_id)]  # time waiting ticks while unclaimed
    assert "data-since=" not in rows[str(claimed.public_id)]
    assert "waiting one" in rows[str(waiting.public_id)]


def test_the_open_tab_shows_ai_and_closed_conversations_but_no_open_handoff(acme: Personas) -> None:
    _, pending = _handoff(acme)
    _, resolved = _handoff(acme, "sorted out")
    handoff_claim(agent=acme.owner, conversation_public_id=str(resolved.public_id))
    handoff_resolve(agent=acme.owner, conversation_public_id=str(resolved.public_id))
    visitor, ai_only = new_visitor(acme.chatbot)
    say(visitor, ai_only, "just the AI")
    _, empty = new_visitor(acme.chatbot)

    client = _client(acme.teammate)
    rows = _rows(client, tab="open")
    assert set(rows) == {str(resolved.public_id), str(ai_only.public_id)}
    assert ">Closed<" in rows[str(resolved.public_id)]
    assert ">Open<" in rows[str(ai_only.public_id)]
    assert set(_rows(client, tab="open", status="closed")) == {str(resolved.public_id)}
    assert str(pending.public_id) not in rows and str(empty.public_id) not in rows


def test_search_finds_message_text_and_visitor_phone_numbers(acme: Personas) -> None:
    visitor, with_phone = _handoff(acme, "My parcel never arrived")
    lead_capture(
        visitor=visitor, conversation_public_id=str(with_phone.public_id), phone="07911 123456", locale="en-GB"
    )
    _, other = _handoff(acme, "Question about tents")
    client = _client(acme.teammate)
    assert set(_rows(client, tab="handoff", q="PARCEL")) == {str(with_phone.public_id)}
    assert set(_rows(client, tab="handoff", q="tents")) == {str(other.public_id)}
    assert set(_rows(client, tab="handoff", q="+447911123456")) == {str(with_phone.public_id)}
    assert set(_rows(client, tab="handoff", q="07911 123456")) == {str(with_phone.public_id)}
    assert _rows(client, tab="handoff", q="nothing like this") == {}


def test_filters_by_status_date_range_and_chatbot(acme: Personas) -> None:
    from tests.factories import make_chatbot

    _, first = _handoff(acme)
    second_bot = enable_handoff(make_chatbot(acme.workspace, "Second bot"))
    visitor = Visitor.objects.create(chatbot=second_bot)
    second = Conversation.objects.create(chatbot=second_bot, visitor=visitor)
    say(visitor, second, "hello second")
    request(visitor, second)
    Conversation.objects.filter(pk=second.pk).update(created_at=timezone.now() - timedelta(days=10))
    client = _client(acme.teammate)
    today = timezone.localdate()

    assert set(_rows(client, tab="handoff", chatbot=second_bot.pk)) == {str(second.public_id)}
    assert set(_rows(client, tab="handoff", **{"from": today.isoformat()})) == {str(first.public_id)}
    older = (today - timedelta(days=5)).isoformat()
    assert set(_rows(client, tab="handoff", to=older)) == {str(second.public_id)}
    assert set(_rows(client, tab="handoff", status="pending")) == {str(first.public_id), str(second.public_id)}
    assert _rows(client, tab="handoff", status="active") == {}
    page = client.get("/dashboard/conversations/", {"tab": "handoff", "from": "yesterday"})
    assert page.status_code == 400  # refused, and the page says why
    assert "From must be a date" in page.content.decode()


def _pager_links(html: str) -> dict[str, dict[str, str]]:
    """Link text → its query parameters, for every link of the pager."""
    pager = html.split("data-pager>", 1)[1].split("</nav>", 1)[0]
    links: dict[str, dict[str, str]] = {}
    for href, text in re.findall(r'<a [^>]*href="\?([^"]*)"[^>]*>([^<]+)</a>', pager):
        links[text.strip()] = dict(parse_qsl(unescape(href)))
    return links


def test_the_handoff_tab_pages_through_a_long_queue_keeping_its_filters(
    acme: Personas, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tests.factories import make_chatbot

    monkeypatch.setattr(console_views, "PAGE_SIZE", 2)
    queue = [str(_handoff(acme, f"waiting {n}")[1].public_id) for n in range(5)]
    elsewhere = enable_handoff(make_chatbot(acme.workspace, "Second bot"))
    request(*new_visitor(elsewhere))
    client = _client(acme.teammate)
    params = {"tab": "handoff", "chatbot": str(acme.chatbot.pk)}

    first = client.get("/dashboard/conversations/", params).content.decode()
    links = _pager_links(first)
    assert set(links) == {"2", "3", "Next →"}
    assert links["Next →"] == links["2"] == {**params, "page": "2"}
    assert links["3"] == {**params, "page": "3"}
    seen = [
        list(_rows(client, **params)),
        list(_rows(client, **params, page="2")),
        list(_rows(client, **params, page="3")),
    ]
    assert seen == [queue[0:2], queue[2:4], queue[4:5]]  # the whole queue, longest wait first, nothing twice

    last = client.get("/dashboard/conversations/", {**params, "page": "3"}).content.decode()
    assert _pager_links(last) == {"← Previous": {**params, "page": "2"}, "1": params, "2": {**params, "page": "2"}}
    fragment = client.get("/dashboard/conversations/", {**params, "page": "3", "fragment": "1"}).content.decode()
    assert "data-pager" in fragment  # the live refresh keeps the page the agent is on


def test_the_open_tab_pages_newest_first(acme: Personas, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(console_views, "PAGE_SIZE", 2)
    for n in range(3):
        visitor, conversation = new_visitor(acme.chatbot)
        say(visitor, conversation, f"chat {n}")
    client = _client(acme.teammate)
    first = client.get("/dashboard/conversations/", {"q": "chat"}).content.decode()
    second_page = {"tab": "open", "q": "chat", "page": "2"}
    assert _pager_links(first) == {"2": second_page, "Older →": second_page}
    assert len(_rows(client, q="chat")) == 2 and len(_rows(client, q="chat", page="2")) == 1
    assert "data-pager" not in client.get("/dashboard/conversations/", {"q": "chat 1"}).content.decode()


def test_the_unclaimed_count_is_waiting_and_busy_handoffs_of_one_workspace(acme: Personas) -> None:
    _handoff(acme)
    _, busy = _handoff(acme)
    assert handoff_expire(handoff_id=busy.handoff.pk, now=timezone.now() + timedelta(hours=1))
    _, claimed = _handoff(acme)
    handoff_claim(agent=acme.owner, conversation_public_id=str(claimed.public_id))
    enable_handoff(acme.other_chatbot)
    request(*new_visitor(acme.other_chatbot))
    assert unclaimed_count(workspace_id=acme.workspace.pk) == 2
    assert unclaimed_counts(workspace_ids=[acme.workspace.pk, acme.other_workspace.pk, 0]) == {
        acme.workspace.pk: 2,
        acme.other_workspace.pk: 1,
        0: 0,
    }


def test_empty_states_read_well(acme: Personas) -> None:
    client = _client(acme.teammate)
    assert (
        "No one is waiting for a person" in client.get("/dashboard/conversations/", {"tab": "handoff"}).content.decode()
    )
    assert "No conversations yet" in client.get("/dashboard/conversations/").content.decode()
    filtered = client.get("/dashboard/conversations/", {"tab": "handoff", "q": "zzz"}).content.decode()
    assert "Nothing matches these filters" in filtered


def test_the_unclaimed_count_is_in_the_title_and_the_sidebar_badge(acme: Personas) -> None:
    _handoff(acme)
    _handoff(acme)
    html = _client(acme.teammate).get("/dashboard/conversations/", {"tab": "handoff"}).content.decode()
    assert "<title>(2) Conversations · Pivra</title>" in html
    assert 'data-unclaimed-badge aria-label="2 unclaimed handoffs"' in html
    assert "data-console-socket" in html


def test_the_list_fragment_is_just_the_tabs_and_rows(acme: Personas) -> None:
    _, conversation = _handoff(acme)
    fragment = _client(acme.teammate).get("/dashboard/conversations/", {"tab": "handoff", "fragment": "1"})
    html = fragment.content.decode()
    assert str(conversation.public_id) in html
    assert "<html" not in html and "Conversation tabs" in html


def test_the_thread_renders_every_author_as_text_never_html(acme: Personas) -> None:
    _, conversation = _handoff(acme, '<img src=x onerror="alert(1)"> hi')
    handoff_claim(agent=acme.owner, conversation_public_id=str(conversation.public_id))
    html = _client(acme.owner).get(f"/dashboard/conversations/{conversation.public_id}/").content.decode()
    assert '<img src=x onerror="alert(1)">' not in html
    assert "&lt;img src=x onerror=&quot;alert(1)&quot;&gt; hi" in html
    assert 'class="ev ev-visitor"' in html
    assert "Handoff requested · Button" in html
    assert "Alice joined the conversation." in html


def test_the_assignee_can_reply_and_resolve(acme: Personas) -> None:
    _, conversation = _handoff(acme)
    handoff_claim(agent=acme.owner, conversation_public_id=str(conversation.public_id))
    page = _client(acme.owner).get(f"/dashboard/conversations/{conversation.public_id}/")
    controls = page.context["controls"]
    assert (controls.badge, controls.can_reply, controls.can_resolve, controls.can_claim) == (
        "Claimed by Alice",
        True,
        True,
        False,
    )
    html = page.content.decode()
    assert 'placeholder="Reply to visitor"' in html
    assert "Yes, resolve" in html
    assert "<dialog" in html


def test_another_agent_sees_it_claimed_and_a_disabled_reply_box_with_the_reason(acme: Personas) -> None:
    _, conversation = _handoff(acme)
    handoff_claim(agent=acme.owner, conversation_public_id=str(conversation.public_id))
    page = _client(acme.teammate).get(f"/dashboard/conversations/{conversation.public_id}/")
    controls = page.context["controls"]
    assert (controls.badge, controls.can_reply, controls.can_resolve, controls.can_claim) == (
        "Claimed by Alice",
        False,
        False,
        False,
    )
    html = page.content.decode()
    assert "Alice claimed this conversation, so only they can reply." in html
    textarea = html.split("<textarea", 1)[1].split(">", 1)[0]
    assert "disabled" in textarea


def test_an_unclaimed_handoff_offers_claim_and_explains_the_reply_box(acme: Personas) -> None:
    _, conversation = _handoff(acme)
    state = _client(acme.teammate).get(f"/dashboard/conversations/{conversation.public_id}/state").json()
    assert state["controls"] == {
        "badge": "Waiting",
        "tone": "warn",
        "handoff_status": "pending",
        "claimed_by": None,
        "can_claim": True,
        "can_reply": False,
        "can_resolve": True,
        "note": "Claim this conversation to reply to the visitor.",
        "can_release": False,
        "can_transfer": False,
        "can_take_over": False,
        "offered_to_me": False,
    }
    assert state["handoff"]["trigger"] == "Button"


def test_a_resolved_conversation_is_closed_and_read_only(acme: Personas) -> None:
    _, conversation = _handoff(acme)
    handoff_resolve(agent=acme.teammate, conversation_public_id=str(conversation.public_id))
    state = _client(acme.owner).get(f"/dashboard/conversations/{conversation.public_id}/state").json()
    assert state["status"] == "closed"
    assert state["controls"]["badge"] == "Resolved"
    assert not any(state["controls"][k] for k in ("can_claim", "can_reply", "can_resolve"))


def test_the_right_panel_shows_visitor_details_and_the_lead(acme: Personas, settings: Any) -> None:
    settings.TIME_ZONE = "UTC"
    visitor, conversation = _handoff(acme)
    Visitor.objects.filter(pk=visitor.pk).update(
        first_seen_at=datetime(2026, 3, 1, 9, 5, tzinfo=UTC),
        current_page="https://shop.example/tents?x=1",
        user_agent="Mozilla/5.0 (Macintosh; Intel Mac OS X 10_15_7) AppleWebKit/537.36 (KHTML, like Gecko) "
        "Chrome/126.0.0.0 Safari/537.36",
        locale="fr-FR",
    )
    lead_capture(
        visitor=visitor, conversation_public_id=str(conversation.public_id), phone="06 12 34 56 78", locale="fr-FR"
    )
    html = _client(acme.teammate).get(f"/dashboard/conversations/{conversation.public_id}/").content.decode()
    for text in ("https://shop.example/tents?x=1", "Chrome 126 on macOS", "fr-FR", "+33612345678"):
        assert text in html, text
    first_seen = html.split("<dt>First seen</dt>", 1)[1].split("</dd>", 1)[0]
    assert first_seen == '<dd><time datetime="2026-03-01T09:05:00+00:00" data-local>1 Mar 2026, 09:05</time>'
    state = _client(acme.teammate).get(f"/dashboard/conversations/{conversation.public_id}/state").json()
    assert state["visitor"]["first_seen_at"] == "2026-03-01T09:05:00+00:00"


@pytest.mark.parametrize(
    ("user_agent", "expected"),
    [
        (
            "Mozilla/5.0 (iPhone; CPU iPhone OS 17_5 like Mac OS X) AppleWebKit/605.1.15 (KHTML, like Gecko) "
            "Version/17.5 Mobile/15E148 Safari/604.1",
            "Safari 17 on iOS",
        ),
        ("Mozilla/5.0 (Windows NT 10.0; Win64; x64; rv:127.0) Gecko/20100101 Firefox/127.0", "Firefox 127 on Windows"),
        (
            "Mozilla/5.0 (Windows NT 10.0; Win64; x64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.0.0 "
            "Safari/537.36 Edg/126.0.2592.87",
            "Edge 126 on Windows",
        ),
        (
            "Mozilla/5.0 (Linux; Android 14; Pixel 8) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/126.0.6478.122 "
            "Mobile Safari/537.36",
            "Chrome 126 on Android",
        ),
        ("python-httpx/0.28.1", "Unknown browser"),
        ("", ""),
    ],
)
def test_the_browser_is_named_from_the_user_agent(user_agent: str, expected: str) -> None:
    assert browser_from_user_agent(user_agent) == expected
