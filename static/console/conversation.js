// One conversation: live thread, Claim (Accept / Decline when it is offered to me), Reply to visitor,
// Transfer to… (a dialog listing the colleagues online now), Release, Take over (owners and admins),
// Resolve (with a confirmation dialog).
//
// The page is rendered by the server; this script follows the conversation over the console socket
// (watch with the contiguous seq it has, so a reconnect replays what it missed; a hole in the seqs
// is fetched, gaps.js), appends new events as
// text (never HTML), and re-reads the page's state after each state change. Every action goes to
// the console API, whose errors ({code, detail}) are shown as written.

import { consoleSocket, durationText, localTime, localizeTimes, postJson, startTicking } from "./console.js";
import { attachmentBubble } from "./attachments.js";
import { GapTracker } from "./gaps.js";
import { gettext, interpolate } from "./i18n.js";

const page = document.querySelector("[data-conversation-page]");
const conversationId = page.dataset.conversation;
const stateUrl = page.dataset.stateUrl;
const api = `/api/console/handoffs/${conversationId}`;
let state = JSON.parse(document.getElementById("conversation-state").textContent);

const thread = page.querySelector("[data-thread]");
const errorBox = page.querySelector("[data-error]");
const claimButton = page.querySelector("[data-claim]");
const resolveButton = page.querySelector("[data-resolve]");
const declineButton = page.querySelector("[data-decline]");
const takeOverButton = page.querySelector("[data-take-over]");
const transferButton = page.querySelector("[data-transfer]");
const releaseButton = page.querySelector("[data-release]");
const transferDialog = document.querySelector("[data-transfer-dialog]");
const transferSelect = transferDialog.querySelector("[data-transfer-select]");
const transferEmpty = transferDialog.querySelector("[data-transfer-empty]");
const transferError = transferDialog.querySelector("[data-transfer-error]");
const confirmTransfer = transferDialog.querySelector("[data-confirm-transfer]");
const composer = page.querySelector("[data-composer]");
const textarea = composer.querySelector("textarea");
const sendButton = composer.querySelector("[data-send]");
const note = composer.querySelector("[data-note]");
const hint = composer.querySelector("[data-hint]");
const badge = page.querySelector("[data-badge]");
const dialog = document.querySelector("[data-resolve-dialog]");
const dialogError = dialog.querySelector("[data-dialog-error]");
const confirmButton = dialog.querySelector("[data-confirm-resolve]");

// The server rendered the whole thread, so the page starts with every seq up to the last one shown;
// from there the tracker keeps the contiguous position and fetches any hole (gaps.js).
const gaps = new GapTracker(
  Math.max(0, ...[...thread.querySelectorAll("[data-seq]")].map((el) => Number(el.dataset.seq))),
  async (after) => {
    const url = `/api/console/conversations/${conversationId}/events?after_seq=${after}`;
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok || response.redirected) throw new Error(`HTTP ${response.status}`);
    return response.json();
  },
  (events) => {
    let stateChanged = false;
    for (const frame of events) if (addEvent(frame) && STATE_KINDS.test(frame.kind)) stateChanged = true;
    if (stateChanged) refreshState();
  },
);

// The thread's system lines (kept in step with pivra/console/thread_labels.py, which draws the same events).
const SYSTEM_LABELS = {
  "handoff.requested": gettext("Handoff requested"),
  "handoff.claimed": gettext("Claimed"),
  "handoff.timed_out": gettext("Timed out · team busy"),
  "handoff.resolved": gettext("Resolved"),
  "lead.captured": gettext("Mobile number left"),
  "conversation.continued": gettext("Continued with AI"),
  "handoff.transferred": gettext("Transferred"),
  "handoff.transfer_ended": gettext("Transfer not accepted"),
  "handoff.taken_over": gettext("Taken over"),
  "handoff.released": gettext("Back in the queue"),
  "rating": gettext("Visitor rated"),
};
// Why a live chat went back to the queue (kept in step with pivra/console/selectors.py).
const RELEASE_REASONS = {
  released: gettext("released by the agent"),
  member_removed: gettext("agent removed from the workspace"),
  agent_deactivated: gettext("agent deactivated"),
  agent_deleted: gettext("agent deleted"),
  agent_missing: gettext("agent no longer a member"),
};
// What asked for a person (handoff.models.Handoff.Trigger); an unknown code is shown capitalised.
const TRIGGER_LABELS = {
  button: gettext("Button"),
  keyword: gettext("Keyword"),
};

// --- the thread ------------------------------------------------------------------------------

function eventStyle(frame) {
  if (frame.kind === "message" && ["visitor", "ai", "agent"].includes(frame.author)) return frame.author;
  if (frame.kind === "handoff.offer") return "ai";
  if (frame.kind.startsWith("handoff.offer_")) return "visitor";
  return "system";
}

function systemLabel(frame) {
  if (frame.kind === "handoff.requested") {
    const code = String((frame.data && frame.data.trigger) || "");
    const trigger = TRIGGER_LABELS[code] || (code ? `${code[0].toUpperCase()}${code.slice(1)}` : "");
    return trigger ? interpolate(gettext("Handoff requested · %(trigger)s"), { trigger }, true) : gettext("Handoff requested");
  }
  if (frame.kind === "handoff.claimed" && frame.data && frame.data.late) return gettext("Claimed late");
  if (frame.kind === "handoff.timed_out" && frame.data && frame.data.reason === "offline") return gettext("Team busy · nobody online");
  if (frame.kind === "handoff.timed_out" && frame.data && frame.data.reason === "after_hours") return gettext("Team busy · after hours");
  const reason = frame.data && frame.data.reason;
  if (frame.kind === "handoff.released" && RELEASE_REASONS[reason]) {
    return interpolate(gettext("Back in the queue · %(reason)s"), { reason: RELEASE_REASONS[reason] }, true);
  }
  return SYSTEM_LABELS[frame.kind] || frame.kind;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // text only: a message never becomes markup
  return node;
}

function timeEl(iso) {
  const time = el("time", "", localTime(iso));
  time.setAttribute("datetime", iso);
  time.dataset.local = "";
  return time;
}

function renderEvent(frame) {
  const style = eventStyle(frame);
  const item = el("li", `ev ev-${style} is-new`);
  item.dataset.seq = String(frame.seq);
  if (style === "system") {
    const line = el("span", "ev-line");
    line.append(el("strong", "", systemLabel(frame)));
    if (frame.text) line.append(" · ", el("span", "ev-text", frame.text));
    line.append(" ", timeEl(frame.created_at));
    item.append(line);
    return item;
  }
  const who = style === "visitor" ? gettext("Visitor") : style === "ai" ? gettext("AI") : frame.agent || gettext("Agent");
  const meta = el("div", "ev-meta");
  meta.append(el("span", "ev-who", who), " ", timeEl(frame.created_at));
  item.append(meta, attachmentBubble(frame) || el("div", "ev-bubble", frame.text));
  return item;
}

function nearBottom() {
  return thread.scrollHeight - thread.scrollTop - thread.clientHeight < 120;
}

function scrollToEnd() {
  thread.scrollTop = thread.scrollHeight;
}

/** Insert an event in seq order, once; returns true when it was new. */
function addEvent(frame) {
  if (thread.querySelector(`[data-seq="${Number(frame.seq)}"]`)) return false;
  const stick = nearBottom();
  thread.querySelector("[data-thread-empty]")?.remove();
  const item = renderEvent(frame);
  const later = [...thread.querySelectorAll("[data-seq]")].find((node) => Number(node.dataset.seq) > frame.seq);
  thread.insertBefore(item, later || null);
  gaps.seen(frame.seq); // past a hole (a lost frame), this fetches the hole
  if (stick || frame.author === "agent") scrollToEnd();
  return true;
}

// --- state: badge, buttons, composer, side panel --------------------------------------------------

function setField(name, value, { link, label } = {}) {
  const node = page.querySelector(`[data-field="${name}"]`);
  if (!node) return;
  node.replaceChildren();
  if (!value) {
    node.append(el("span", "muted", name === "phone" ? gettext("Not left yet") : gettext("Unknown")));
  } else if (link) {
    const a = el("a", link === "tel" ? "" : "break", label || value);
    a.href = link === "tel" ? `tel:${value}` : value;
    if (link !== "tel") {
      a.target = "_blank";
      a.rel = "noopener noreferrer nofollow";
    }
    node.append(a);
  } else {
    node.append(value);
  }
}

function applyState(next) {
  state = next;
  gaps.serverAt(next.last_seq);
  const c = next.controls;
  badge.textContent = c.badge;
  badge.className = `badge badge-${c.tone}`;
  claimButton.hidden = !c.can_claim;
  claimButton.textContent = c.offered_to_me ? gettext("Accept") : gettext("Claim");
  declineButton.hidden = !c.offered_to_me;
  takeOverButton.hidden = !c.can_take_over;
  transferButton.hidden = !c.can_transfer;
  releaseButton.hidden = !c.can_release;
  resolveButton.hidden = !c.can_resolve;
  textarea.disabled = !c.can_reply;
  sendButton.disabled = !c.can_reply;
  composer.classList.toggle("is-disabled", !c.can_reply);
  if (c.can_reply) textarea.removeAttribute("aria-describedby");
  else textarea.setAttribute("aria-describedby", "composer-note");
  note.textContent = c.note;
  note.hidden = !c.note;
  hint.hidden = !c.can_reply;

  setField("current_page", next.visitor.current_page, {
    link: "url",
    label: next.visitor.current_page_display,
  });
  setField("browser", next.visitor.browser);
  setField("locale", next.visitor.locale);
  setField("phone", next.lead.phone, { link: "tel" });
  const lastSeen = page.querySelector('[data-field="last_seen_at"]');
  if (lastSeen) {
    lastSeen.setAttribute("datetime", next.visitor.last_seen_at);
    lastSeen.textContent = localTime(next.visitor.last_seen_at);
  }
  const card = page.querySelector("[data-handoff-card]");
  if (next.handoff) {
    card.hidden = false;
    setField("handoff_status", next.handoff.status_label);
    setField("trigger", next.handoff.trigger);
    setField("claimed_by", next.handoff.claimed_by || gettext("Nobody yet"));
    page.querySelector('[data-field="waited_label"]').textContent = next.handoff.ticking ? gettext("Time waiting") : gettext("Waited");
    const waited = page.querySelector('[data-field="waited"]');
    waited.replaceChildren();
    if (next.handoff.ticking) {
      const tick = el("span", "tick", durationText((Date.now() - Date.parse(next.handoff.requested_at)) / 1000));
      tick.dataset.since = next.handoff.requested_at;
      waited.append(tick);
    } else {
      waited.append(next.handoff.waited);
    }
  }
}

let refreshing = null;
async function refreshState() {
  // One request at a time; a change during it asks for one more.
  if (refreshing) {
    refreshing.again = true;
    return;
  }
  refreshing = { again: false };
  try {
    const response = await fetch(stateUrl, { credentials: "same-origin", cache: "no-store" });
    if (response.ok && !response.redirected) applyState(await response.json());
  } catch {
    /* offline: the reconnect will refresh */
  } finally {
    const again = refreshing.again;
    refreshing = null;
    if (again) refreshState();
  }
}

// --- errors ----------------------------------------------------------------------------------

function showError(message) {
  errorBox.textContent = message;
  errorBox.hidden = !message;
}

// --- actions ---------------------------------------------------------------------------------

// A claim or reply goes over the console socket while it is open (the page's own data: the server
// skips the HTTP parse, middleware, session load and CSRF of a request); a socket that is down, drops
// or stays silent sends it over HTTP instead, with the same client id — a reply is stored once.
async function command(frame, path, body) {
  if (consoleSocket.open) {
    try {
      return await consoleSocket.command(frame);
    } catch (error) {
      if (error.refused) throw error;
    }
  }
  return await postJson(`${api}/${path}`, body);
}

/** One handoff command from a button (claim, accept, decline, release, take over): the button is
 *  disabled while it runs, a refusal is shown as the server wrote it. */
async function handoffCommand(button, type, path, extra = {}) {
  showError("");
  button.disabled = true;
  try {
    await command({ type, conversation_id: conversationId, client_id: newClientId(), ...extra }, path, extra);
    await refreshState();
    if (!textarea.disabled) textarea.focus();
    return true;
  } catch (error) {
    showError(error.message);
    refreshState();
    return false;
  } finally {
    button.disabled = false;
  }
}

// Accepting a transfer (or a routing offer) is claiming it.
claimButton.addEventListener("click", () =>
  handoffCommand(claimButton, state.controls.offered_to_me ? "accept" : "claim", "claim"),
);
declineButton.addEventListener("click", () => handoffCommand(declineButton, "decline", "decline"));
releaseButton.addEventListener("click", () => handoffCommand(releaseButton, "release", "release"));
takeOverButton.addEventListener("click", () => handoffCommand(takeOverButton, "take_over", "take-over"));

// Transfer: the dialog lists the colleagues online now (asked when it opens, so the list is fresh).
transferButton.addEventListener("click", async () => {
  transferError.hidden = true;
  transferSelect.replaceChildren();
  transferEmpty.hidden = true;
  confirmTransfer.disabled = true;
  transferDialog.showModal();
  try {
    const response = await fetch(`${api}/colleagues`, { credentials: "same-origin", cache: "no-store" });
    const body = await response.json();
    if (!response.ok) throw new Error(body.detail || `HTTP ${response.status}`);
    for (const colleague of body) {
      const option = el("option", "", colleague.name);
      option.value = String(colleague.id);
      transferSelect.append(option);
    }
    transferEmpty.hidden = body.length > 0;
    transferSelect.hidden = body.length === 0;
    confirmTransfer.disabled = body.length === 0;
    if (body.length) transferSelect.focus();
  } catch (error) {
    transferError.textContent = error.message;
    transferError.hidden = false;
  }
});

confirmTransfer.addEventListener("click", async (event) => {
  event.preventDefault(); // stay open until the server agrees
  const toUserId = Number(transferSelect.value);
  if (!toUserId) return;
  confirmTransfer.disabled = true;
  transferError.hidden = true;
  try {
    const body = { to_user_id: toUserId };
    await command({ type: "transfer", conversation_id: conversationId, client_id: newClientId(), ...body }, "transfer", body);
    transferDialog.close();
    showError("");
    await refreshState();
  } catch (error) {
    transferError.textContent = error.message;
    transferError.hidden = false;
    refreshState();
  } finally {
    confirmTransfer.disabled = false;
  }
});

function newClientId() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  const bytes = new Uint8Array(16);
  window.crypto.getRandomValues(bytes);
  return [...bytes].map((b) => b.toString(16).padStart(2, "0")).join("");
}

// A failed send keeps its client id while the text is unchanged, so a retry is stored once.
let pending = null;
let sending = false;

async function sendReply() {
  const text = textarea.value.trim();
  if (!text || sending || textarea.disabled) return;
  if (!pending || pending.text !== text) pending = { text, clientId: newClientId() };
  sending = true;
  sendButton.disabled = true;
  showError("");
  try {
    const frame = { type: "reply", conversation_id: conversationId, text, client_id: pending.clientId };
    const ack = await command(frame, "reply", { client_id: pending.clientId, text });
    addEvent({
      type: "event",
      seq: ack.seq,
      kind: "message",
      author: "agent",
      text,
      agent: page.dataset.me || null,
      created_at: new Date().toISOString(),
      data: {},
    });
    pending = null;
    if (textarea.value.trim() === text) textarea.value = "";
    scrollToEnd();
  } catch (error) {
    showError(error.message);
    if (error.status === 403 || error.status === 409 || error.refused) refreshState();
  } finally {
    sending = false;
    sendButton.disabled = textarea.disabled;
    textarea.focus();
  }
}

composer.addEventListener("submit", (event) => {
  event.preventDefault();
  sendReply();
});

textarea.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendReply();
  }
});

resolveButton.addEventListener("click", () => {
  dialogError.hidden = true;
  dialogError.textContent = "";
  dialog.showModal();
  confirmButton.focus();
});

confirmButton.addEventListener("click", async (event) => {
  event.preventDefault(); // stay open until the server agrees
  confirmButton.disabled = true;
  dialogError.hidden = true;
  try {
    await postJson(`${api}/resolve`, {});
    dialog.close();
    showError("");
    await refreshState();
  } catch (error) {
    dialogError.textContent = error.message;
    dialogError.hidden = false;
    refreshState();
  } finally {
    confirmButton.disabled = false;
  }
});

// --- live ------------------------------------------------------------------------------------

const STATE_KINDS = /^(handoff\.|lead\.|conversation\.)/;

consoleSocket.addEventListener("event", (event) => {
  const frame = event.detail;
  if (frame.conversation !== conversationId) return;
  if (addEvent(frame) && STATE_KINDS.test(frame.kind)) refreshState();
});
consoleSocket.addEventListener("queue", (event) => {
  if (event.detail.conversation === conversationId) refreshState();
});
consoleSocket.addEventListener("watching", (event) => {
  // (Re)joined: whatever changed while the socket was down shows up now.
  if (event.detail.conversation !== conversationId) return;
  gaps.serverAt(event.detail.last_seq);
  if (event.detail.last_seq !== state.last_seq) refreshState();
});
consoleSocket.addEventListener("status", (event) => {
  if (event.detail.connected && event.detail.resumed) refreshState();
});
consoleSocket.addEventListener("resync", (event) => {
  if (event.detail.conversation === conversationId) window.location.reload();
});
consoleSocket.addEventListener("error", (event) => {
  if (event.detail.code === "not_found") showError(gettext("This conversation is no longer available to you."));
});
consoleSocket.addEventListener("ended", () => {
  // Signed out: nothing sent from here could be accepted any more.
  textarea.disabled = true;
  sendButton.disabled = true;
  claimButton.disabled = true;
  resolveButton.disabled = true;
  for (const button of [declineButton, takeOverButton, transferButton, releaseButton]) button.disabled = true;
});

consoleSocket.watch(conversationId, () => gaps.position); // a reconnect replays from the contiguous seq

localizeTimes(page);
startTicking(page);
scrollToEnd();
if (!textarea.disabled) textarea.focus();
