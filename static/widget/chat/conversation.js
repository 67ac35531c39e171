/*
 * Applying the server's truth to the screen: events deduplicated by seq (replacing our own
 * "sending" rows), state snapshots (an older one never wins), switching to another of the visitor's
 * conversations, and renderView(), the one place that re-renders every surface for a state.
 */

import { loadHistory } from "./api.js";
import { toParent } from "./bridge.js";
import { focusComposer, renderComposer } from "./composer.js";
import { CONFIG, T, t } from "./config.js";
import { markSeen, noteServerSeq, resetGaps } from "./gaps.js";
import { mutate } from "./layout.js";
import { insertBySeq, renderEvent, renderGreeting, renderOffers } from "./messages.js";
import { renderPanel } from "./panels.js";
import { S, sameConversation, ui, viewState } from "./state.js";
import { clearAgentTyping, clearTyping, dropDraft, renderTyping } from "./typing.js";

export function onEvent(ev, live) {
  if (!ev || typeof ev.seq !== "number") return;
  const kind = String(ev.kind || "message");
  if (!sameConversation(ev)) return; // another of the visitor's conversations: its state frame decides
  if (!S.convId && ev.conversation) S.convId = ev.conversation;
  if (S.rendered.has(ev.seq)) return; // never show an event twice

  // Our own message coming back: replace the local "sending" row.
  let pending = null;
  if (ev.client_id && S.pending.has(ev.client_id)) {
    pending = S.pending.get(ev.client_id);
    S.pending.delete(ev.client_id);
  }
  if (!pending && ev.client_id) {
    for (const row of ui.log.querySelectorAll("[data-client-id]")) {
      if (row.dataset.clientId === ev.client_id) pending = { el: row };
    }
  }

  mutate(() => {
    if (pending && pending.el) pending.el.remove();
    const row = renderEvent(ev);
    if (row) {
      row.dataset.seq = String(ev.seq);
      insertBySeq(row, ev.seq);
    }
    S.rendered.set(ev.seq, row);
    markSeen(ev.seq); // advances the contiguous position, or has the hole below fetched
  }, ev.author === "visitor");

  if (kind === "message" && (ev.author === "ai" || ev.author === "agent")) {
    S.typing[ev.author] = false;
    if (ev.author === "ai") dropDraft();
    renderTyping();
  }
  if (["handoff.offer_declined", "handoff.requested", "conversation.continued"].includes(kind)) {
    S.offerClosedSeq = Math.max(S.offerClosedSeq, ev.seq);
  }
  if (kind.startsWith("handoff.") || kind === "conversation.continued") renderOffers();

  const notable = (kind === "message" && (ev.author === "ai" || ev.author === "agent")) || kind === "handoff.offer";
  if (live && notable && !S.open) {
    S.unread += 1;
    toParent("pivra:unread", { count: S.unread });
  }
}

export function applyState(state, force = false) {
  if (!state || typeof state !== "object") return;
  if (state.conversation && S.convId && state.conversation !== S.convId) {
    // Another of this visitor's conversations. Follow it only when a person picked it up
    // (a late claim after "Continue with AI"), so stale frames about a conversation the
    // visitor left can never drag the view back.
    if (state.status === "handoff" && state.handoff && state.handoff.status === "active") switchTo(state);
    return;
  }
  if (!S.convId && state.conversation) S.convId = state.conversation;
  const current = S.state && S.state.conversation === state.conversation ? S.state : null;
  // A snapshot older than the one on screen (e.g. a slow history response) must not win.
  if (!force && current && (state.last_seq || 0) < (current.last_seq || 0)) return;
  const agentBefore = (current && current.handoff && current.handoff.agent) || null;
  S.state = state;
  if (((state.handoff && state.handoff.agent) || null) !== agentBefore) clearAgentTyping(); // changed hands
  noteServerSeq(state.last_seq); // its event frames should follow; if they never do, fetch them
  renderView();
}

// A `position` frame: the visitor's place in line moved (someone ahead was claimed, left or timed
// out). Only for the conversation on screen while it is still waiting; a state frame decides the rest.
export function applyPosition(f) {
  const h = S.state && S.state.conversation === f.conversation ? S.state.handoff : null;
  if (!h || h.status !== "pending") return;
  S.state = { ...S.state, handoff: { ...h, position: f.position, position_over: f.position_over ?? null, wait_seconds: f.wait_seconds } };
  renderView();
}

// Show another conversation: a `switch` frame, a welcome for a different one, or a late claim.
export function switchTo(state) {
  if (!state) return;
  if (state.conversation && state.conversation === S.convId) {
    applyState(state, true);
    return;
  }
  const focusWasInside = document.activeElement && ui.panel.contains(document.activeElement);
  resetConversation(state.conversation || null);
  applyState(state, true);
  if (S.convId) loadHistory(S.convId);
  if (S.transport === "sse" && S.sseAbort) S.sseAbort.abort(); // reopen the stream for this conversation
  if (focusWasInside) focusComposer();
}

function resetConversation(id) {
  S.convId = id;
  S.state = null;
  S.lastSeq = 0;
  resetGaps();
  S.rendered.clear();
  S.offers = [];
  S.offerClosedSeq = 0;
  S.panelKey = "";
  dropDraft();
  clearTyping();
  ui.log.replaceChildren();
  renderGreeting();
  // Actions aimed at the old conversation are moot; unsent messages still go out.
  for (const [clientId, entry] of S.pending) {
    if (entry.frame.type === "message") {
      if (entry.el) ui.log.append(entry.el);
    } else {
      S.pending.delete(clientId);
    }
  }
  ui.scroll.scrollTop = ui.scroll.scrollHeight;
}

export function renderView() {
  const vs = viewState();
  document.body.dataset.state = vs;
  if (vs !== "ai") {
    dropDraft();
    S.typing.ai = false;
  }
  if (vs !== "active") S.typing.agent = false;
  renderTyping();
  renderHeader(vs);
  renderPanel(vs);
  renderComposer(vs);
  renderOffers();
  ui.actions.hidden = !(handoffOffered() && vs === "ai");
  if (vs !== S.lastView) {
    ui.human.disabled = false;
    S.lastView = vs;
  }
}

// "Talk to a human" is offered when the chatbot has handoff and the owner does not hide it now
// (outside office hours); the latest state says which, the frame's config until one arrives.
function handoffOffered() {
  if (!CONFIG.handoffEnabled) return false;
  const hidden = S.state && typeof S.state.handoff_hidden === "boolean" ? S.state.handoff_hidden : CONFIG.handoffHidden;
  return !hidden;
}

function renderHeader(vs) {
  const agent = S.state && S.state.handoff && S.state.handoff.agent;
  ui.badge.hidden = vs !== "active";
  document.body.classList.toggle("pv-live", vs === "active");
  const texts = {
    ai: T.statusAi,
    pending: T.statusPending,
    busy: T.statusBusy,
    resolved: T.statusClosed,
    active: agent ? t("agentFromTeam", { agent }) : T.statusActiveNoName,
  };
  ui.statusText.textContent = texts[vs];
}
