// Live notices on every console page: a conversation transferred (or routed) to me, with Accept and
// Decline, and "Carol took over your conversation". Frames come over the console socket in the
// user's own group (handoff/transitions/offers.py and takeover.py); Accept is a claim, Decline
// sends the conversation back to the queue at once. Text only, never HTML.

import { consoleSocket, postJson } from "./console.js";
import { gettext, interpolate, ngettext } from "./i18n.js";

const region = document.createElement("div");
region.className = "notices";
region.setAttribute("aria-live", "assertive");
region.dataset.notices = "";
document.body.append(region);

const offers = new Map(); // conversation id → its notice
let tick = null;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function clientId() {
  return window.crypto && typeof window.crypto.randomUUID === "function"
    ? window.crypto.randomUUID()
    : `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

// Over the socket while it is open, else over HTTP (the same services and refusals).
async function run(type, path, conversation) {
  if (consoleSocket.open) {
    try {
      return await consoleSocket.command({ type, conversation_id: conversation, client_id: clientId() });
    } catch (error) {
      if (error.refused) throw error;
    }
  }
  return await postJson(`/api/console/handoffs/${conversation}/${path}`, {});
}

function secondsLeft(notice) {
  return Math.max(0, Math.round((Date.parse(notice.dataset.expiresAt) - Date.now()) / 1000));
}

function renderCountdown() {
  for (const notice of offers.values()) {
    const left = secondsLeft(notice);
    notice.querySelector("[data-countdown]").textContent =
      left > 0 ? interpolate(ngettext("%(left)s s to accept", "%(left)s s to accept", left), { left }, true) : gettext("Time is up");
  }
  if (!offers.size) {
    clearInterval(tick);
    tick = null;
  }
}

function removeOffer(conversation) {
  offers.get(conversation)?.remove();
  offers.delete(conversation);
}

function showOffer(frame) {
  removeOffer(frame.conversation);
  const notice = el("section", "notice notice-offer");
  notice.dataset.offer = frame.conversation;
  notice.dataset.expiresAt = frame.expires_at;
  notice.setAttribute("role", "alertdialog");
  notice.setAttribute("aria-label", gettext("Conversation offered to you"));
  const title =
    frame.kind === "route"
      ? gettext("New conversation for you (round robin)")
      : frame.by
        ? interpolate(gettext("%(name)s transferred a conversation to you"), { name: frame.by }, true)
        : gettext("A conversation is offered to you");
  const text = el("p", "notice-text");
  text.append(el("strong", "", title), el("span", "muted", ` · ${frame.chatbot || ""}`));
  const error = el("p", "notice-error");
  error.hidden = true;
  const accept = el("button", "btn btn-primary", gettext("Accept"));
  accept.type = "button";
  accept.dataset.acceptOffer = "";
  const decline = el("button", "btn", gettext("Decline"));
  decline.type = "button";
  decline.dataset.declineOffer = "";
  const open = el("a", "notice-link", gettext("View"));
  open.href = frame.url;
  const buttons = el("div", "notice-buttons");
  buttons.append(accept, decline, open, el("span", "muted notice-countdown", ""));
  buttons.lastChild.dataset.countdown = "";
  notice.append(text, buttons, error);

  const act = async (button, type, path) => {
    accept.disabled = decline.disabled = true;
    error.hidden = true;
    try {
      await run(type, path, frame.conversation);
      removeOffer(frame.conversation);
      if (type === "accept") window.location.assign(frame.url);
    } catch (failure) {
      error.textContent = failure.message;
      error.hidden = false;
      accept.disabled = decline.disabled = false;
    }
  };
  accept.addEventListener("click", () => act(accept, "accept", "claim"));
  decline.addEventListener("click", () => act(decline, "decline", "decline"));
  region.append(notice);
  offers.set(frame.conversation, notice);
  renderCountdown();
  if (!tick) tick = setInterval(renderCountdown, 1000);
}

function showTakenOver(frame) {
  const notice = el("section", "notice notice-info");
  notice.dataset.takenOver = frame.conversation;
  notice.setAttribute("role", "status");
  const text = el("p", "notice-text");
  const title = frame.by
    ? interpolate(gettext("%(name)s took over your conversation"), { name: frame.by }, true)
    : gettext("An admin took over your conversation");
  text.append(el("strong", "", title));
  const open = el("a", "notice-link", gettext("View"));
  open.href = frame.url;
  const close = el("button", "btn btn-quiet", gettext("Dismiss"));
  close.type = "button";
  close.addEventListener("click", () => notice.remove());
  const buttons = el("div", "notice-buttons");
  buttons.append(open, close);
  notice.append(text, buttons);
  region.append(notice);
}

// Offers made while this page was not listening (a reload, a reconnect): asked once it is.
async function loadOffers() {
  try {
    const response = await fetch("/api/console/offers", { credentials: "same-origin", cache: "no-store" });
    if (!response.ok || response.redirected) return;
    for (const frame of await response.json()) if (!offers.has(frame.conversation)) showOffer(frame);
  } catch {
    /* offline: the next reconnect asks again */
  }
}

consoleSocket.addEventListener("welcome", loadOffers);
consoleSocket.addEventListener("offer", (event) => showOffer(event.detail));
consoleSocket.addEventListener("offer.ended", (event) => removeOffer(event.detail.conversation));
consoleSocket.addEventListener("taken_over", (event) => showTakenOver(event.detail));
// Claimed (by me in another tab, or after the offer ran out) or closed: the offer is over.
consoleSocket.addEventListener("event", (event) => {
  const frame = event.detail;
  if (offers.has(frame.conversation) && /^handoff\.(claimed|resolved|transfer_ended)$/.test(frame.kind)) {
    removeOffer(frame.conversation);
  }
});
