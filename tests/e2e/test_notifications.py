"""Desktop notifications in Chromium against the real stack: the one-time in-page prompt (the browser is
asked only after "Turn on", and only once), a Notification when a visitor asks for a person while the
dashboard tab is hidden (none while it is visible), a click that opens the conversation; and the
service worker registered at /dashboard/sw.js with this browser's Web Push subscription saved."""

from __future__ import annotations

import json

from django.contrib.auth.models import User
from playwright.sync_api import BrowserContext, Page, expect

from chatbots.models import Chatbot
from conversations.models import Conversation
from conversations.notes import note_create
from handoff.transitions.claim import handoff_claim
from handoff.transitions.request import handoff_request
from notifications.models import PushSubscription
from tests.e2e.conftest import screenshot
from tests.e2e.console_helpers import LIVE, login, say, seed, seeded_visitor
from tests.e2e.widget_helpers import off_thread
from tests.push_helpers import BrowserKeys

PROMPT = "Get a desktop notification when a visitor asks for a person or writes to you."

# window.Notification as the page sees it, recording what it is asked to show (a headless browser
# shows nothing a test could read), and document.visibilityState driven by the test (window.__hidden):
# the page under test is the real one, only these two browser surfaces are stood in for.
STUB_NOTIFICATIONS = """
(() => {
  const shown = (window.__notifications = []);
  window.__permissionRequests = 0;
  let permission = sessionStorage.getItem("test.permission") || "default"; // kept across reloads, as a browser does
  class FakeNotification {
    constructor(title, options = {}) {
      this.title = title;
      this.body = options.body;
      this.tag = options.tag;
      this.data = options.data;
      this.closed = false;
      shown.push(this);
    }
    static get permission() { return permission; }
    static requestPermission() {
      window.__permissionRequests += 1;
      permission = "granted";
      sessionStorage.setItem("test.permission", permission);
      return Promise.resolve(permission);
    }
    close() { this.closed = true; }
  }
  window.Notification = FakeNotification;
  window.__hidden = false;
  // Every `notify` frame the console socket receives, in full.
  const notices = (window.__notifyFrames = []);
  const Native = window.WebSocket;
  window.WebSocket = class extends Native {
    constructor(...args) {
      super(...args);
      this.addEventListener("message", (e) => {
        try { const f = JSON.parse(e.data); if (f.type === "notify") notices.push(f); } catch (err) { /* not JSON */ }
      });
    }
  };
  Object.defineProperty(Document.prototype, "visibilityState", {
    configurable: true,
    get() { return window.__hidden ? "hidden" : "visible"; },
  });
})();
"""


def _ask_for_a_person_now(bot: Chatbot, text: str) -> Conversation:
    visitor, conversation = seeded_visitor(bot, page="https://northwind.example/returns")
    say(visitor, conversation, text)
    handoff_request(visitor=visitor, conversation_public_id=str(conversation.public_id), trigger="button")
    return conversation


def _ask_for_a_person(bot: Chatbot, text: str) -> Conversation:
    return off_thread(_ask_for_a_person_now, bot=bot, text=text)


def _wait_for_notice(page: Page, conversation: Conversation) -> None:
    page.wait_for_function(
        "(id) => window.__notifyFrames.some((f) => f.conversation === id)",
        arg=str(conversation.public_id),
        timeout=LIVE,
    )


def _shown_for(page: Page, conversation: Conversation) -> list[dict[str, str]]:
    shown: list[dict[str, str]] = page.evaluate(
        "(tag) => window.__notifications.filter((n) => n.tag === tag)"
        ".map((n) => ({title: n.title, body: n.body, tag: n.tag}))",
        f"pivra-{conversation.public_id}",
    )
    return shown


def test_a_hidden_tab_shows_a_notification_for_a_new_handoff_and_a_click_opens_it(context: BrowserContext) -> None:
    bot = seed()
    context.add_init_script(STUB_NOTIFICATIONS)
    errors: list[str] = []
    page = login(context, "alice", errors)

    prompt = page.locator("[data-notify-prompt]")
    expect(prompt).to_contain_text(PROMPT)
    expect(prompt.get_by_role("button", name="Turn on")).to_be_visible()
    expect(prompt.get_by_role("button", name="Not now")).to_be_visible()
    assert page.evaluate("window.__permissionRequests") == 0  # never asked on page load
    screenshot(page, "issue16-notifications-prompt")
    prompt.get_by_role("button", name="Turn on").click()
    expect(prompt).to_have_count(0)
    assert page.evaluate("window.__permissionRequests") == 1
    page.reload()
    expect(page.get_by_role("heading", name="Conversations", exact=True)).to_be_visible()
    expect(page.locator("[data-notify-prompt]")).to_have_count(0)  # asked once, remembered

    # Visible tab: the agent sees the queue live; the notice arrives but nothing pops up.
    seen_live = _ask_for_a_person(bot, "Seen live, no pop-up please")
    _wait_for_notice(page, seen_live)
    assert _shown_for(page, seen_live) == []

    page.evaluate("window.__hidden = true")
    conversation = _ask_for_a_person(bot, "I need to return a <b>damaged</b> kettle")
    _wait_for_notice(page, conversation)
    assert _shown_for(page, conversation) == [
        {
            "title": f"Visitor {str(conversation.visitor.public_id)[:8]} asks for a person · Demo bot",
            "body": "“I need to return a <b>damaged</b> kettle”",  # text, never markup
            "tag": f"pivra-{conversation.public_id}",
        }
    ]

    tag = f"pivra-{conversation.public_id}"
    page.evaluate("(tag) => window.__notifications.find((n) => n.tag === tag).onclick({ preventDefault() {} })", tag)
    page.wait_for_url(f"**/dashboard/conversations/{conversation.public_id}/")
    expect(page.get_by_text("damaged", exact=False).first).to_be_visible()
    assert errors == []


def test_without_web_push_the_prompt_says_so_and_not_now_dismisses_it_for_good(context: BrowserContext) -> None:
    seed()
    context.add_init_script(STUB_NOTIFICATIONS)
    # A dashboard served over plain http from another host: no service worker, so no Web Push.
    context.add_init_script("Object.defineProperty(window, 'isSecureContext', { get: () => false });")
    page = login(context, "bob")
    note = page.locator("[data-notify-prompt] [data-notify-note]")
    expect(note).to_have_text(
        "Web Push needs the dashboard over https, so you are told only while a dashboard tab is open."
    )
    screenshot(page, "issue16-notifications-prompt-no-push")
    page.locator("[data-notify-prompt]").get_by_role("button", name="Not now").click()
    expect(page.locator("[data-notify-prompt]")).to_have_count(0)
    page.reload()
    expect(page.get_by_role("heading", name="Conversations", exact=True)).to_be_visible()
    expect(page.locator("[data-notify-prompt]")).to_have_count(0)
    assert page.evaluate("window.__permissionRequests") == 0


# A push service a test can reach: Chromium's own (FCM) needs Google's servers, so the subscription the
# page gets is a loopback endpoint with real browser keys; registering the worker and saving is real.
def _stub_push_manager(keys: BrowserKeys, endpoint: str) -> str:
    subscription = json.dumps(keys.subscription_json(endpoint))
    return f"""
(() => {{
  const json = {subscription};
  const fake = {{ endpoint: json.endpoint, options: {{ applicationServerKey: null }}, toJSON: () => json,
                  unsubscribe: () => Promise.resolve(true) }};
  window.__subscribeCalls = [];
  PushManager.prototype.getSubscription = function () {{ return Promise.resolve(null); }};
  PushManager.prototype.subscribe = function (options) {{
    const key = new Uint8Array(options.applicationServerKey);
    window.__subscribeCalls.push({{ userVisibleOnly: options.userVisibleOnly, keyLength: key.length,
      key: btoa(String.fromCharCode(...key)).replace(/\\+/g, "-").replace(/\\//g, "_").replace(/=+$/, "") }});
    return Promise.resolve(fake);
  }};
}})();
"""


def test_the_service_worker_registers_and_the_subscription_is_saved(context: BrowserContext, settings) -> None:
    seed()
    keys = BrowserKeys()
    endpoint = "http://127.0.0.1:9/push/alice-laptop"
    context.add_init_script(STUB_NOTIFICATIONS)
    context.add_init_script(_stub_push_manager(keys, endpoint))
    errors: list[str] = []
    page = login(context, "alice", errors)
    page.locator("[data-notify-prompt]").get_by_role("button", name="Turn on").click()
    page.wait_for_function("document.documentElement.dataset.pushSubscribed === 'true'", timeout=LIVE)

    registration = page.evaluate(
        """async () => {
            const r = await navigator.serviceWorker.getRegistration("/dashboard/");
            return r && { scope: r.scope, script: (r.active || r.waiting || r.installing).scriptURL };
        }"""
    )
    assert registration is not None
    assert registration["scope"].endswith("/dashboard/")
    assert registration["script"].endswith("/dashboard/sw.js")
    calls = page.evaluate("window.__subscribeCalls")
    assert calls == [{"userVisibleOnly": True, "keyLength": 65, "key": settings.VAPID_PUBLIC_KEY}]

    saved = off_thread(lambda: list(PushSubscription.objects.values("user__username", "endpoint", "p256dh", "auth")))
    assert saved == [{"user__username": "alice", "endpoint": endpoint, "p256dh": keys.p256dh, "auth": keys.auth}]
    assert off_thread(lambda: PushSubscription.objects.filter(user=User.objects.get(username="alice")).count()) == 1
    assert errors == []


def test_a_hidden_tab_is_told_of_a_message_in_my_live_chat_and_of_a_mention(context: BrowserContext) -> None:
    bot = seed()
    context.add_init_script(STUB_NOTIFICATIONS)
    errors: list[str] = []
    page = login(context, "alice", errors)
    page.locator("[data-notify-prompt]").get_by_role("button", name="Turn on").click()
    page.evaluate("window.__hidden = true")

    def claimed_then_written() -> Conversation:
        conversation = _ask_for_a_person_now(bot, "Refund question")
        handoff_claim(agent=User.objects.get(username="alice"), conversation_public_id=str(conversation.public_id))
        say(conversation.visitor, conversation, "Is my refund on its way?")
        return conversation

    conversation = off_thread(claimed_then_written)
    page.wait_for_function(
        "(tag) => window.__notifications.some((n) => n.tag === tag && n.body === 'Is my refund on its way?')",
        arg=f"pivra-{conversation.public_id}",
        timeout=LIVE,
    )
    written = [n for n in _shown_for(page, conversation) if n["body"] == "Is my refund on its way?"]
    assert written[0]["title"] == f"Visitor {str(conversation.visitor.public_id)[:8]} wrote"

    off_thread(
        lambda: note_create(
            conversation=conversation,
            author=User.objects.get(username="bob"),
            text="@alice the refund policy changed last week",
            client_id=None,
        )
    )
    page.wait_for_function(
        "(tag) => window.__notifications.some((n) => n.tag === tag && n.title.endsWith('mentioned you'))",
        arg=f"pivra-{conversation.public_id}",
        timeout=LIVE,
    )
    mention = [n for n in _shown_for(page, conversation) if n["title"].endswith("mentioned you")]
    assert mention == [
        {
            "title": "Bob mentioned you",
            "body": "@alice the refund policy changed last week",
            "tag": f"pivra-{conversation.public_id}",
        }
    ]
    assert errors == []


# After subscribe, the browser hands the same subscription back (until unsubscribed), as a real one does.
KEEP_SUBSCRIPTION = """
(() => {
  const subscribe = PushManager.prototype.subscribe;
  PushManager.prototype.subscribe = function (options) {
    return subscribe.call(this, options).then((s) => {
      window.__sub = s;
      s.unsubscribe = () => { window.__sub = null; window.__unsubscribed = true; return Promise.resolve(true); };
      return s;
    });
  };
  PushManager.prototype.getSubscription = function () { return Promise.resolve(window.__sub || null); };
})();
"""


def test_the_subscription_is_saved_once_and_the_sidebar_control_turns_it_off(context: BrowserContext) -> None:
    seed()
    keys = BrowserKeys()
    endpoint = "http://127.0.0.1:9/push/alice-desktop"
    context.add_init_script(STUB_NOTIFICATIONS)
    context.add_init_script(_stub_push_manager(keys, endpoint))
    context.add_init_script(KEEP_SUBSCRIPTION)
    calls: list[str] = []
    context.on(
        "request", lambda r: calls.append(r.method) if r.url.endswith("/api/console/push-subscriptions") else None
    )
    errors: list[str] = []
    page = login(context, "alice", errors)
    page.locator("[data-notify-prompt]").get_by_role("button", name="Turn on").click()
    page.wait_for_function("document.documentElement.dataset.pushSubscribed === 'true'", timeout=LIVE)
    assert calls == ["POST"]
    page.reload()
    page.wait_for_function("document.documentElement.dataset.pushSubscribed === 'true'", timeout=LIVE)
    assert calls == ["POST"]  # nothing changed: not saved again on every page load

    control = page.locator("[data-notify-control]")
    expect(control).to_contain_text("Desktop notifications: On")
    screenshot(page, "issue16-notifications-control-on")
    control.get_by_role("button", name="Turn off").click()
    expect(control).to_contain_text("Desktop notifications: Off")
    page.wait_for_function("window.__unsubscribed === true", timeout=LIVE)
    assert calls == ["POST", "DELETE"]
    assert off_thread(lambda: PushSubscription.objects.count()) == 0
    screenshot(page, "issue16-notifications-control-off")
    page.reload()
    expect(page.locator("[data-notify-control]")).to_contain_text("Desktop notifications: Off")
    assert calls == ["POST", "DELETE"]  # off stays off: no subscription on the next page
    assert errors == []


def test_a_dismissed_browser_question_is_not_called_blocked(context: BrowserContext) -> None:
    seed()
    context.add_init_script(STUB_NOTIFICATIONS)
    context.add_init_script(
        "window.Notification.requestPermission = () => { window.__permissionRequests += 1; "
        "return Promise.resolve('default'); };"
    )
    page = login(context, "bob")
    prompt = page.locator("[data-notify-prompt]")
    prompt.get_by_role("button", name="Turn on").click()
    expect(prompt).to_contain_text("You closed the browser's question without answering.")
    expect(prompt).not_to_contain_text("blocked")
    screenshot(page, "issue16-notifications-dismissed")
