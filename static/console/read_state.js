// Read state on the conversation page.
//
// "Seen" under the last agent message the visitor has seen (their widget open and the page visible):
// from the stored mark at load, then the "seen" frames of this conversation. And this agent's own read
// mark: while the page is visible, the highest seq of a visitor message on screen is sent as one "read"
// frame per burst of new visitor messages (the Conversations list's unread count for this agent then
// clears). Only visitor messages count as unread, so only they move the mark: an agent's own reply or a
// system line never sends a frame.

import { consoleSocket } from "./console.js";
import { gettext } from "./i18n.js";

const page = document.querySelector("[data-conversation-page]");
const conversationId = page.dataset.conversation;
const thread = page.querySelector("[data-thread]");
const initial = JSON.parse(document.getElementById("conversation-state").textContent);
const READ_DELAY_MS = 600;

let seenSeq = Number(initial.visitor_seen_seq) || 0;
let sentRead = 0;
let readTimer = 0;

// --- "Seen" -----------------------------------------------------------------------------------

function renderSeen() {
  const mark = thread.querySelector("[data-seen-mark]");
  const seen = [...thread.querySelectorAll("li.ev-agent[data-seq]")].filter((li) => Number(li.dataset.seq) <= seenSeq);
  const last = seen.reduce((top, li) => (!top || Number(li.dataset.seq) > Number(top.dataset.seq) ? li : top), null);
  if (mark && mark.parentElement === last) return;
  mark?.remove();
  if (!last) return;
  const node = document.createElement("span");
  node.className = "seen-mark";
  node.dataset.seenMark = "";
  node.textContent = gettext("Seen");
  node.title = gettext("The visitor has seen this message");
  last.append(node);
}

function noteSeen(seq) {
  const value = Number(seq) || 0;
  if (value <= seenSeq) return;
  seenSeq = value;
  renderSeen();
}

consoleSocket.addEventListener("seen", (event) => {
  if (event.detail.conversation === conversationId) noteSeen(event.detail.seq);
});

// After a reconnect a "seen" may have been missed: the page's state carries the stored mark.
consoleSocket.addEventListener("status", async (event) => {
  if (!event.detail.connected || !event.detail.resumed) return;
  try {
    const response = await fetch(page.dataset.stateUrl, { credentials: "same-origin", cache: "no-store" });
    if (response.ok && !response.redirected) noteSeen((await response.json()).visitor_seen_seq);
  } catch {
    /* offline: the next frame or reconnect brings it */
  }
});

// --- this agent's read mark -------------------------------------------------------------------

function highestSeq() {
  let top = 0;
  for (const li of thread.querySelectorAll("li.ev-visitor[data-seq]")) top = Math.max(top, Number(li.dataset.seq) || 0);
  return top;
}

function sendRead() {
  if (document.visibilityState !== "visible") return;
  const seq = highestSeq();
  if (seq <= sentRead) return;
  if (consoleSocket.send({ type: "read", conversation_id: conversationId, seq })) sentRead = seq;
}

function scheduleRead() {
  clearTimeout(readTimer);
  readTimer = setTimeout(sendRead, READ_DELAY_MS);
}

// A new event in the thread: the "Seen" mark may move, and there is more to have read.
new MutationObserver(() => {
  renderSeen();
  scheduleRead();
}).observe(thread, { childList: true });
document.addEventListener("visibilitychange", scheduleRead);
consoleSocket.addEventListener("watching", (event) => {
  if (event.detail.conversation === conversationId) scheduleRead(); // the socket is open: send what waited
});

renderSeen();
scheduleRead();
