// Desktop notifications for an agent whose dashboard tab is not in front.
//
// 1. A small banner asks once ("Turn on" / "Not now"); the browser's permission prompt appears only
//    after "Turn on" (never on page load), and the answer is remembered in localStorage.
// 2. While this tab is hidden, the console socket's `notify` frames (a new handoff request in one of
//    my workspaces, a visitor message in a live chat I hold: pivra/notifications) and `note.mention`
//    (a teammate @mentioned me) become a Notification, tagged per conversation so they coalesce;
//    clicking it focuses the tab and opens the conversation.
// 3. With permission, a service worker (/dashboard/sw.js) subscribes to Web Push with the server's
//    VAPID key and the subscription is saved, so the agent is told with no dashboard tab open at all.
//    Where Web Push cannot work (plain http off localhost, an old browser, PIVRA_WEB_PUSH off) the
//    banner says so instead of offering a button that would fail. The subscription is saved again only
//    when its endpoint, the server's key or the session changed, or a day passed (sessionStorage).
// 4. A "Desktop notifications: On/Off" control in the sidebar turns them off in this browser (the
//    subscription is unsubscribed and deleted on the server) and on again.

import { consoleSocket, csrfToken } from "./console.js";
import { gettext, interpolate } from "./i18n.js";

const PROMPT_KEY = "pivra.notifications.prompt"; // "dismissed" once answered, either way
const OFF_KEY = "pivra.notifications.off"; // "1": the agent turned them off in this browser
const SAVED_KEY = "pivra.push.saved"; // sessionStorage: endpoint|key|session last saved
const script = document.querySelector("script[data-notifications]");
const vapidKey = script?.dataset.vapidKey || "";
const swUrl = script?.dataset.swUrl || "/dashboard/sw.js";
const subscriptionsUrl = script?.dataset.subscriptionsUrl || "/api/console/push-subscriptions";
const pushSession = script?.dataset.pushSession || "";
const SCOPE = "/dashboard/";
const TITLE_CHARS = 80;
const BODY_CHARS = 140;

const notificationsSupported = () => "Notification" in window;
const permission = () => (notificationsSupported() ? window.Notification.permission : "unsupported");

/** Why Web Push is not available here, or "" when it is. */
function pushUnavailableReason() {
  if (!vapidKey) return gettext("Web Push is turned off on this server, so you are told only while a dashboard tab is open.");
  if (!window.isSecureContext) return gettext("Web Push needs the dashboard over https, so you are told only while a dashboard tab is open.");
  if (!("serviceWorker" in navigator) || !("PushManager" in window)) {
    return gettext("This browser has no Web Push, so you are told only while a dashboard tab is open.");
  }
  return "";
}

function stored(storage, key) {
  try {
    return window[storage].getItem(key);
  } catch {
    return null;
  }
}

function store(storage, key, value) {
  try {
    if (value === null) window[storage].removeItem(key);
    else window[storage].setItem(key, value);
  } catch {
    /* private mode: asked / saved again on the next page */
  }
}

const remembered = () => stored("localStorage", PROMPT_KEY) === "dismissed";
const remember = () => store("localStorage", PROMPT_KEY, "dismissed");
const turnedOff = () => stored("localStorage", OFF_KEY) === "1";

const DISMISSED_TEXT = gettext("You closed the browser's question without answering. Use “Desktop notifications” in the menu to ask again.");
const BLOCKED_TEXT = gettext("Notifications are blocked for this site. Allow them in the browser's site settings to turn them on.");

// --- the in-page prompt -------------------------------------------------------------------------

function button(text, className, onClick) {
  const el = document.createElement("button");
  el.type = "button";
  el.className = className;
  el.textContent = text;
  el.addEventListener("click", onClick);
  return el;
}

function showPrompt() {
  if (document.querySelector("[data-notify-prompt]")) return;
  const box = document.createElement("section");
  box.className = "notify-prompt";
  box.setAttribute("role", "region");
  box.setAttribute("aria-label", gettext("Desktop notifications"));
  box.dataset.notifyPrompt = "";
  const text = document.createElement("p");
  text.className = "notify-prompt-text";
  text.textContent = gettext("Get a desktop notification when a visitor asks for a person or writes to you.");
  const note = document.createElement("p");
  note.className = "notify-prompt-note";
  note.dataset.notifyNote = "";
  note.textContent = pushUnavailableReason();
  note.hidden = !note.textContent;
  const actions = document.createElement("div");
  actions.className = "notify-prompt-actions";
  const close = () => box.remove();
  actions.append(
    button(gettext("Turn on"), "btn btn-primary", async () => {
      remember();
      let answer = "default";
      try {
        answer = await window.Notification.requestPermission();
      } catch {
        answer = permission();
      }
      if (answer === "granted") {
        close();
        store("localStorage", OFF_KEY, null);
        await ensurePushSubscription();
      } else {
        text.textContent = answer === "default" ? DISMISSED_TEXT : BLOCKED_TEXT;
        actions.replaceChildren(button(gettext("Close"), "btn", close));
        note.hidden = true;
      }
      renderControl();
    }),
    button(gettext("Not now"), "btn btn-quiet", () => {
      remember();
      close();
    }),
  );
  box.append(text, note, actions);
  (document.getElementById("main") || document.body).prepend(box);
}

// --- Web Push: the service worker and this browser's subscription ---------------------------------

function keyBytes(base64url) {
  const padded = base64url.replace(/-/g, "+").replace(/_/g, "/") + "=".repeat((4 - (base64url.length % 4)) % 4);
  return Uint8Array.from(atob(padded), (c) => c.charCodeAt(0));
}

function sameKey(buffer, bytes) {
  if (!buffer) return false;
  const a = new Uint8Array(buffer);
  return a.length === bytes.length && a.every((value, i) => value === bytes[i]);
}

async function saveSubscription(subscription) {
  const response = await fetch(subscriptionsUrl, {
    method: "POST",
    credentials: "same-origin",
    headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
    body: JSON.stringify(subscription.toJSON()),
  });
  if (!response.ok) throw new Error(`saving the subscription answered ${response.status}`);
}

// The day too: saved at least daily, so the server keeps the session's current expiry with it.
const savedMark = (subscription) => `${subscription.endpoint}|${vapidKey}|${pushSession}|${new Date().toISOString().slice(0, 10)}`;

/** Register the worker, subscribe (again if the server's key changed) and save the subscription. */
export async function ensurePushSubscription() {
  if (permission() !== "granted" || pushUnavailableReason()) return null;
  try {
    const registration = await navigator.serviceWorker.register(swUrl, { scope: SCOPE });
    await navigator.serviceWorker.ready;
    const key = keyBytes(vapidKey);
    let subscription = await registration.pushManager.getSubscription();
    if (subscription && !sameKey(subscription.options?.applicationServerKey, key)) {
      await subscription.unsubscribe();
      subscription = null;
    }
    subscription = subscription || (await registration.pushManager.subscribe({ userVisibleOnly: true, applicationServerKey: key }));
    // Saved again only when something changed: not a POST on every page load.
    if (stored("sessionStorage", SAVED_KEY) !== savedMark(subscription)) {
      await saveSubscription(subscription);
      store("sessionStorage", SAVED_KEY, savedMark(subscription));
    }
    document.documentElement.dataset.pushSubscribed = "true";
    return subscription;
  } catch (error) {
    // No push service reachable, a browser policy…: the tab's own notifications still work.
    document.documentElement.dataset.pushSubscribed = "false";
    console.warn("Pivra: Web Push is not available in this browser:", error && error.message);
    return null;
  }
}

/** Off in this browser: no Notification from this tab, and the Web Push subscription unsubscribed and
 * deleted on the server (so no push either). */
export async function turnOff() {
  store("localStorage", OFF_KEY, "1");
  store("sessionStorage", SAVED_KEY, null);
  document.documentElement.dataset.pushSubscribed = "false";
  if (!("serviceWorker" in navigator)) return;
  try {
    const registration = await navigator.serviceWorker.getRegistration(SCOPE);
    const subscription = registration && (await registration.pushManager.getSubscription());
    if (!subscription) return;
    await fetch(subscriptionsUrl, {
      method: "DELETE",
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
      body: JSON.stringify({ endpoint: subscription.endpoint }),
    });
    await subscription.unsubscribe();
  } catch (error) {
    console.warn("Pivra: could not turn Web Push off:", error && error.message);
  }
}

async function turnOn(status) {
  let answer = permission();
  if (answer === "default") {
    try {
      answer = await window.Notification.requestPermission();
    } catch {
      answer = permission();
    }
  }
  if (answer !== "granted") {
    status.textContent =
      answer === "default" ? gettext("Not turned on: the browser's question was closed.") : gettext("Blocked in the browser's site settings.");
    return;
  }
  store("localStorage", OFF_KEY, null);
  remember();
  document.querySelector("[data-notify-prompt]")?.remove();
  await ensurePushSubscription();
}

// --- the on/off control in the sidebar ---------------------------------------------------------------

function renderControl() {
  const footer = document.querySelector(".sidebar-footer");
  if (!footer || !notificationsSupported()) return;
  let box = footer.querySelector("[data-notify-control]");
  if (!box) {
    box = document.createElement("div");
    box.className = "notify-control";
    box.dataset.notifyControl = "";
    footer.prepend(box);
  }
  const on = permission() === "granted" && !turnedOff();
  const label = document.createElement("span");
  label.textContent = on ? gettext("Desktop notifications: On") : gettext("Desktop notifications: Off");
  const status = document.createElement("span");
  status.className = "notify-control-status";
  status.setAttribute("role", "status");
  const toggle = button(on ? gettext("Turn off") : gettext("Turn on"), "link", async () => {
    toggle.disabled = true;
    if (on) await turnOff();
    else await turnOn(status);
    const message = status.textContent;
    renderControl();
    box.querySelector(".notify-control-status").textContent = message;
  });
  toggle.dataset.notifyToggle = on ? "off" : "on";
  box.replaceChildren(label, toggle, status);
}

// The worker asks an open tab to show a conversation when its notification is clicked.
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.addEventListener("message", (event) => {
    const data = event.data || {};
    if (data.type === "pivra.open" && typeof data.url === "string" && data.url.startsWith("/dashboard/")) {
      window.location.assign(data.url);
    }
  });
}

// --- notifications while this tab is hidden ---------------------------------------------------------

function clip(text, limit) {
  const flat = String(text || "").replace(/\s+/g, " ").trim();
  return flat.length <= limit ? flat : `${flat.slice(0, limit - 1).trimEnd()}…`;
}

function openUrl(conversation) {
  return `/dashboard/notifications/open/${encodeURIComponent(conversation)}/`;
}

/** A Notification for a conversation, if this tab is hidden and the agent allowed them. */
export function notify({ conversation, title, body, url }) {
  if (document.visibilityState !== "hidden" || permission() !== "granted" || turnedOff() || typeof conversation !== "string") return null;
  const target = typeof url === "string" && url.startsWith("/dashboard/") ? url : openUrl(conversation);
  // Title and body are plain text to the Notification API (never markup); bounded here as on the server.
  const options = { body: clip(body, BODY_CHARS), tag: `pivra-${conversation}`, data: { url: target } };
  let notification;
  try {
    notification = new window.Notification(clip(title, TITLE_CHARS) || "Pivra", options);
  } catch {
    // Some browsers allow notifications only through a service worker; its click handler opens the chat.
    if ("serviceWorker" in navigator) {
      navigator.serviceWorker.getRegistration(SCOPE).then((r) => r && r.showNotification(clip(title, TITLE_CHARS) || "Pivra", options));
    }
    return null;
  }
  notification.onclick = (event) => {
    if (event && event.preventDefault) event.preventDefault();
    window.focus();
    notification.close();
    window.location.assign(target);
  };
  return notification;
}

consoleSocket.addEventListener("notify", (event) => notify(event.detail));

consoleSocket.addEventListener("note.mention", (event) => {
  const frame = event.detail;
  if (!frame || !frame.note) return;
  notify({
    conversation: frame.conversation,
    title: frame.note.author_name
      ? interpolate(gettext("%(name)s mentioned you"), { name: frame.note.author_name }, true)
      : gettext("A teammate mentioned you"),
    body: frame.note.text,
    url: openUrl(frame.conversation),
  });
});

// --- start -----------------------------------------------------------------------------------------

if (notificationsSupported()) {
  if (permission() === "default" && !remembered()) showPrompt();
  else if (permission() === "granted" && !turnedOff()) ensurePushSubscription();
  renderControl();
}
