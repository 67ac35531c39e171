"""Agent availability in the browser: the sidebar's status control is stored (kept across a reload),
and a teammate's Conversations page shows the change live in its "Online now" list."""

from __future__ import annotations

from playwright.sync_api import BrowserContext, Page, expect

from chatbots.models import Membership
from tests.e2e.console_helpers import LIVE, login, seed, shot
from tests.e2e.widget_helpers import off_thread


def _set_capacity(username: str, limit: int) -> None:
    Membership.objects.filter(user__username=username, workspace__slug="demo").update(max_live_chats=limit)


def _member(page: Page, name: str):
    return page.locator("[data-presence-list] .presence-member", has_text=name)


def test_status_chosen_in_the_sidebar_is_kept_and_shown_live_to_teammates(
    context: BrowserContext, second_context: BrowserContext
) -> None:
    seed()  # alice and bob in "Demo"; bob holds one live chat
    off_thread(_set_capacity, username="bob", limit=3)
    errors: list[str] = []
    bob = login(second_context, "bob", errors)
    alice = login(context, "alice", errors)

    # Both consoles are open and both chose Online (the default): each is Online to the other.
    expect(_member(bob, "Alice")).to_have_attribute("data-status", "online", timeout=LIVE)
    expect(_member(alice, "Bob")).to_contain_text("Online · 1 / 3 chats")

    status = alice.get_by_label("Your status")
    expect(status).to_have_value("online")
    status.select_option("away")
    expect(alice.locator("[data-availability-dot]")).to_have_class("status-dot status-away")
    # Bob's page was not reloaded: the presence frame brought it.
    expect(_member(bob, "Alice")).to_have_attribute("data-status", "away", timeout=LIVE)
    expect(_member(bob, "Alice")).to_contain_text("Away")
    expect(bob.locator("[data-online-count]")).to_have_text("1 of 3 online")  # bob; admin has no console open

    alice.reload()
    expect(alice.get_by_label("Your status")).to_have_value("away")  # stored, not just shown
    assert (
        off_thread(lambda: Membership.objects.get(user__username="alice", workspace__slug="demo").availability)
        == "away"
    )
    shot(bob, "availability-online-now")

    alice.get_by_label("Your status").select_option("online")
    expect(_member(bob, "Alice")).to_have_attribute("data-status", "online", timeout=LIVE)
    assert errors == []


def test_an_owner_sets_a_members_capacity_on_the_overview(context: BrowserContext) -> None:
    seed()
    admin = login(context, "admin")
    admin.get_by_role("link", name="Overview").click()
    team = admin.locator("#team")
    expect(team.get_by_role("heading", name="Team")).to_be_visible()
    field = team.get_by_label("Max live chats for Alice")
    expect(field).to_have_value("")  # unlimited
    field.fill("2")
    team.locator("tr", has_text="Alice").get_by_role("button", name="Save").click()
    expect(admin.get_by_text("Max live chats for Alice: 2.")).to_be_visible()
    expect(admin.locator("#team").get_by_label("Max live chats for Alice")).to_have_value("2")
    assert (
        off_thread(lambda: Membership.objects.get(user__username="alice", workspace__slug="demo").max_live_chats) == 2
    )
    admin.locator("#team").scroll_into_view_if_needed()
    shot(admin, "availability-team-capacity")


def _fill_socket_cap(username: str) -> int:
    """``username`` already holds the most console sockets one user may (as if from other tabs)."""
    from django.contrib.auth.models import User

    from chatbots.presence import MAX_SOCKETS_PER_USER, presence_admit

    user_id = User.objects.get(username=username).pk
    for n in range(MAX_SOCKETS_PER_USER):
        assert presence_admit(user_id=user_id, socket_id=f"other-tab-{n}")
    return user_id


def test_one_tab_too_many_says_so_and_a_reload_after_closing_one_goes_live(context: BrowserContext) -> None:
    from chatbots.presence import presence_dismiss

    seed()
    user_id = off_thread(_fill_socket_cap, username="alice")
    errors: list[str] = []
    alice = login(context, "alice", errors)
    notice = alice.locator("[data-too-many-tabs]")
    expect(notice).to_contain_text("Too many Pivra tabs are open", timeout=LIVE)
    expect(alice.locator("[data-connection-banner]")).to_have_text("")  # not "Connection lost": it does not retry
    shot(alice, "availability-too-many-tabs")

    off_thread(presence_dismiss, user_id=user_id, socket_id="other-tab-0")  # one tab closed
    notice.get_by_role("link", name="reload this page.").click()
    expect(alice.get_by_role("heading", name="Conversations", exact=True)).to_be_visible()
    expect(_member(alice, "Alice")).to_have_attribute("data-status", "online", timeout=LIVE)
    expect(alice.locator("[data-too-many-tabs]")).to_have_count(0)
    assert errors == []
