// The conversation list: ticks "time waiting" and re-renders itself (server-side HTML) whenever the
// console socket reports a change in this workspace: a new handoff, a claim, a resolve, a message.

import { coalesce } from "./coalesce.js";
import { consoleSocket, localizeTimes, startTicking, workspaceId } from "./console.js";

const region = document.querySelector("[data-conversation-list]");

// Filters: selects and dates apply on change; the search applies on Enter (a normal GET form).
for (const field of document.querySelectorAll("[data-filters] [data-autosubmit]")) {
  field.addEventListener("change", () => field.form.requestSubmit());
}

localizeTimes(region);
startTicking(region);

function fragmentUrl() {
  const url = new URL(window.location.href);
  url.searchParams.set("fragment", "1");
  return url;
}

async function refresh() {
  try {
    const before = new Set([...region.querySelectorAll("[data-conversation]")].map((el) => el.dataset.conversation));
    const response = await fetch(fragmentUrl(), {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
      cache: "no-store",
    });
    if (response.redirected || !response.ok) return; // logged out or gone: leave the page as it is
    const html = await response.text();
    region.innerHTML = html; // our own server-rendered, escaped template
    localizeTimes(region);
    for (const row of region.querySelectorAll("[data-conversation]")) {
      if (!before.has(row.dataset.conversation)) row.classList.add("is-new");
    }
    region.dispatchEvent(new CustomEvent("pivra:list-updated", { bubbles: true }));
  } catch {
    /* offline: the next frame or reconnect refreshes again */
  }
}

// Every agent's page hears every event of the workspace: a claim alone sends an event and a queue
// change, and a busy minute sends many. One fetch in flight and one queued at most, each within
// 150 ms of the first event, keeps the list live (well within a second) without a fetch per frame.
const schedule = coalesce(refresh, { delay: 150 });

consoleSocket.addEventListener("queue", (event) => {
  if (event.detail.workspace === workspaceId) schedule();
});
consoleSocket.addEventListener("event", (event) => {
  if (event.detail.workspace === workspaceId) schedule();
});
consoleSocket.addEventListener("status", (event) => {
  if (event.detail.connected && event.detail.resumed) schedule(); // catch up after a reconnect
});
// This agent read a conversation (here or in another tab): its row's unread count goes, here and now —
// no re-fetch (a visitor message after the mark arrives as an event, which re-fetches the list).
consoleSocket.addEventListener("read", (event) => {
  if (event.detail.workspace !== workspaceId) return;
  for (const row of region.querySelectorAll("[data-conversation]")) {
    if (row.dataset.conversation === event.detail.conversation) row.querySelector("[data-unread]")?.remove();
  }
});

// "Online now": who is Online / Away / Offline and their live chats. Re-read (server-side HTML) when
// presence changes (a status chosen, a first console opened, a last one gone past the grace) and on
// the handoff events that change someone's "2 / 3 chats" (a claim, a resolve, a release, a transfer,
// a take-over) — not on every message. Every agent's page re-reads it, so the wait is long (2 s):
// a busy workspace costs each page at most one fetch in flight and one queued per 2 s.
const PRESENCE_DELAY_MS = 2000;
const LIVE_CHAT_KINDS = new Set([
  "handoff.claimed",
  "handoff.resolved",
  "handoff.released",
  "handoff.transferred",
  "handoff.taken_over",
]);
const presenceRegion = document.querySelector("[data-presence-list]");

async function refreshPresence() {
  try {
    const response = await fetch(presenceRegion.dataset.url, {
      credentials: "same-origin",
      headers: { Accept: "text/html" },
      cache: "no-store",
    });
    if (response.redirected || !response.ok) return;
    presenceRegion.innerHTML = await response.text(); // our own server-rendered, escaped template
  } catch {
    /* offline: the next frame or reconnect refreshes again */
  }
}

if (presenceRegion) {
  const schedulePresence = coalesce(refreshPresence, { delay: PRESENCE_DELAY_MS });
  consoleSocket.addEventListener("presence", (event) => {
    if (event.detail.workspace === workspaceId) schedulePresence();
  });
  consoleSocket.addEventListener("event", (event) => {
    if (event.detail.workspace === workspaceId && LIVE_CHAT_KINDS.has(event.detail.kind)) schedulePresence();
  });
  // After every welcome (first connect and reconnects): the list was rendered before this page's own
  // socket opened its lease, and a socket never hears its own arrival — without this a freshly signed-in
  // agent would see themselves Offline.
  consoleSocket.addEventListener("welcome", () => schedulePresence());
}
