/*
 * The message log: one row per stored event, kept in seq order, plus the greeting and the handoff
 * offer's two buttons, which go moot once a later event (or the visitor) has answered them.
 */

import { fillAttachment } from "./attachments.js";
import { BOT_NAME, CONFIG, T, t } from "./config.js";
import { sendAction } from "./protocol.js";
import { S, ui, viewState } from "./state.js";
import { appendRichText, el, formatTime } from "./util.js";

export function renderGreeting() {
  const text = typeof CONFIG.greeting === "string" ? CONFIG.greeting.trim() : "";
  if (!text) return;
  const row = el("div", "pv-row pv-ai pv-greeting");
  row.dataset.fixed = "1";
  row.append(el("span", "pv-sr", t("speaker", { name: BOT_NAME })));
  const bubble = el("div", "pv-bubble");
  appendRichText(bubble, text);
  row.append(bubble);
  ui.log.prepend(row);
}

export function messageRow(author, text, createdAt, agentName) {
  const row = el("div", `pv-row pv-${author}`);
  if (author === "agent") {
    row.append(el("div", "pv-name", agentName || T.teamMember));
  } else {
    row.append(el("span", "pv-sr", t("speaker", { name: author === "visitor" ? T.you : BOT_NAME })));
  }
  const bubble = el("div", "pv-bubble");
  appendRichText(bubble, text);
  const when = formatTime(createdAt);
  if (when) bubble.title = when;
  row.append(bubble);
  return row;
}

function systemLine(text) {
  const row = el("div", "pv-row pv-system");
  row.append(el("span", "pv-sysline", text));
  return row;
}

function offerRow(ev) {
  const row = el("div", "pv-row pv-ai pv-offer");
  row.append(el("span", "pv-sr", t("speaker", { name: BOT_NAME })));
  const bubble = el("div", "pv-bubble");
  // Our own words in the visitor's language (the stored event text is for the console).
  bubble.append(el("p", "pv-offer-q", T.offerQuestion));
  const actions = el("div", "pv-offer-actions");
  const offer = { seq: ev.seq, buttons: [], answered: false };
  for (const [label, accept] of [
    [T.offerYes, true],
    [T.offerNo, false],
  ]) {
    const btn = el("button", `pv-btn ${accept ? "pv-btn-primary" : "pv-btn-secondary"} pv-btn-sm`, label);
    btn.type = "button";
    btn.addEventListener("click", () => replyToOffer(offer, btn, accept));
    offer.buttons.push(btn);
    actions.append(btn);
  }
  bubble.append(actions);
  const when = formatTime(ev.created_at);
  if (when) bubble.title = when;
  row.append(bubble);
  S.offers.push(offer);
  return row;
}

// One row per event; system kinds get our own short lines so the state panel's texts
// (waiting / busy message, "Conversation resolved ✓") are never shown twice.
export function renderEvent(ev) {
  switch (ev.kind || "message") {
    case "message":
      if (ev.author === "system") return ev.text ? systemLine(ev.text) : null;
      if (ev.data && ev.data.attachment) {
        const row = messageRow(ev.author === "agent" ? "agent" : "visitor", ev.text, ev.created_at, ev.agent);
        fillAttachment(row, ev); // an image or PDF instead of its name (attachments.js)
        return row;
      }
      return messageRow(ev.author === "visitor" || ev.author === "agent" ? ev.author : "ai", ev.text, ev.created_at, ev.agent);
    case "handoff.offer":
      return offerRow(ev);
    case "handoff.offer_declined":
      return systemLine(T.lineDeclined);
    case "handoff.requested":
      return systemLine(T.lineRequested);
    case "handoff.claimed":
      return systemLine(t("lineClaimed", { agent: ev.agent || T.teamMember }));
    case "handoff.timed_out": {
      const reason = ev.data && ev.data.reason;
      return systemLine(reason === "after_hours" ? T.lineAfterHours : reason === "offline" ? T.lineOffline : T.lineTimedOut);
    }
    case "handoff.transferred":
      return systemLine(t("lineTransferred", { agent: ev.agent || T.teamMember, to: (ev.data && ev.data.to) || T.teamMember }));
    case "handoff.transfer_ended":
      return systemLine(t("lineTransferEnded", { agent: (ev.data && ev.data.to) || T.teamMember }));
    case "handoff.taken_over":
      return systemLine(t("lineTakenOver", { agent: ev.agent || T.teamMember }));
    case "lead.captured":
      return systemLine(T.lineLead);
    case "handoff.released":
      return systemLine(t("lineReleased", { agent: ev.agent || T.teamMember }));
    case "handoff.resolved":
      if (ev.data && ev.data.reason === "idle") return systemLine(T.lineResolvedIdle);
      return systemLine(ev.agent ? t("lineResolvedBy", { agent: ev.agent }) : T.lineResolved);
    case "conversation.continued":
      return systemLine(T.lineContinued);
    case "conversation.ended":
      return systemLine(T.lineEnded);
    case "rating": {
      const score = Number(ev.data && ev.data.score) || 0;
      if (ev.data && ev.data.scale === "five") return systemLine(t("lineRatedStars", { n: score }));
      return systemLine(score >= 4 ? T.lineRatedGood : T.lineRatedBad);
    }
    default:
      return ev.text ? systemLine(ev.text) : null;
  }
}

// Rows are ordered by seq; local "sending" rows (no seq yet) stay after every stored event.
export function insertBySeq(row, seq) {
  for (const child of ui.log.children) {
    if (child === row) continue;
    const childSeq = child.dataset.seq ? Number(child.dataset.seq) : null;
    if ((childSeq !== null && childSeq > seq) || child.dataset.pending) {
      if (child.previousElementSibling !== row) ui.log.insertBefore(row, child);
      return;
    }
  }
  if (ui.log.lastElementChild !== row) ui.log.append(row);
}

export function renderOffers() {
  const canAnswer = viewState() === "ai";
  for (const offer of S.offers) {
    const moot = offer.answered || !canAnswer || offer.seq <= S.offerClosedSeq;
    for (const btn of offer.buttons) btn.disabled = moot;
  }
}

function replyToOffer(offer, button, accept) {
  offer.answered = true;
  button.classList.add("pv-chosen");
  button.setAttribute("aria-pressed", "true");
  renderOffers();
  sendAction(
    { type: "handoff.offer_reply", offer_seq: offer.seq, accept },
    {
      onError: () => {
        offer.answered = false;
        button.classList.remove("pv-chosen");
        button.removeAttribute("aria-pressed");
        renderOffers();
      },
    },
  );
}
