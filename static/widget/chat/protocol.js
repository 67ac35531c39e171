/*
 * The protocol both transports share (README "Widget protocol"). handleFrame() takes every server
 * frame, whether it came over the socket or the SSE stream. sendAction() keeps every client action
 * in S.pending under its client_id until acked and sends it as a socket frame or as its HTTP twin,
 * so it can be resent with the same id after a reconnect (the server dedupes).
 */

import { api, loadHistory, renewSession, renewSessionAndReconnect } from "./api.js";
import { MAX_LEN, T, tn } from "./config.js";
import { applyPosition, applyState, onEvent, switchTo } from "./conversation.js";
import { PAST_GAP_DELAY, noteServerSeq } from "./gaps.js";
import { setConnected, setDegraded, showNotice, showRateLimit } from "./layout.js";
import { setPhoneBusy, showPhoneError } from "./panels.js";
import { sendFrame } from "./socket.js";
import { S } from "./state.js";
import { clearTyping, dropDraft, onDelta, onTyping } from "./typing.js";
import { backoff, uuid } from "./util.js";

/* ------------------------------------------------------------------ frames (both transports) */

export function handleFrame(f) {
  if (!f || typeof f !== "object") return;
  S.lastFrameAt = Date.now();
  switch (f.type) {
    case "welcome":
      onWelcome(f);
      break;
    case "state":
      applyState(f.state);
      break;
    case "position":
      applyPosition(f);
      break;
    case "switch":
      for (const [clientId, entry] of S.pending) {
        if (entry.frame.type === "continue_with_ai" || entry.frame.type === "new_conversation") S.pending.delete(clientId);
      }
      switchTo(f.state);
      break;
    case "resync":
      applyState(f.state, true);
      if (S.convId) loadHistory(S.convId);
      break;
    case "event":
      onEvent(f, true);
      break;
    case "ack":
      onAck(f);
      break;
    case "typing":
      onTyping(f);
      break;
    case "ai.delta":
      onDelta(f);
      break;
    case "error":
      onError(f);
      break;
    default:
      break; // pong and anything newer than this widget
  }
}

function onWelcome(f) {
  S.authRenewals = 0;
  setDegraded(false); // the hello needed Redis: the server is whole again
  setConnected(true);
  const state = f.state;
  if (state && state.conversation && state.conversation !== S.convId) switchTo(state);
  else applyState(state, true);
  if (S.pageUrl) sendFrame({ type: "page", url: S.pageUrl });
  flushPending();
}

function onAck(f) {
  setDegraded(false);
  // The action's event is stored at f.seq: if its frame never comes, the gap fetch brings it.
  if (typeof f.seq === "number") noteServerSeq(f.seq, PAST_GAP_DELAY);
  const entry = S.pending.get(f.client_id);
  if (!entry) return;
  S.pending.delete(f.client_id);
  if (entry.onAck) entry.onAck(f);
}

function onError(f) {
  if (f.code === "unavailable") {
    onUnavailable(f.retry_after);
    return;
  }
  clearTyping();
  dropDraft();
  const entry = f.client_id ? S.pending.get(f.client_id) : null;
  if (entry) S.pending.delete(f.client_id);
  if (entry && entry.onError && entry.onError(f) === true) return;
  const detail = typeof f.detail === "string" && f.detail ? f.detail : "";
  switch (f.code) {
    case "rate_limited":
      showRateLimit(Number(f.retry_after) || 1);
      break;
    case "message_too_long":
      showNotice(tn("tooLong", MAX_LEN));
      break;
    case "not_authenticated":
      renewSessionAndReconnect();
      break;
    case "handoff_unavailable":
      showNotice(detail || T.handoffUnavailable);
      break;
    case "invalid_phone":
      showPhoneError(detail || T.phoneInvalid);
      setPhoneBusy(false);
      break;
    default:
      showNotice(detail || T.genericError);
  }
}

// The server is briefly unavailable (Redis away): nothing was stored, so the action stays pending
// under its client_id (its "Sending…" row stays, the composer keeps what is typed) and goes again —
// after the socket's reconnect (the server closes it with 4503), or in SSE mode after a backoff that
// honours Retry-After — until it is acked. The banner says "Reconnecting…" meanwhile.
export function onUnavailable(retryAfter) {
  setDegraded(true);
  const seconds = Number(retryAfter) || 0;
  if (seconds > 0) S.retryAt = Math.max(S.retryAt, Date.now() + seconds * 1000);
  if (S.transport !== "ws") {
    clearTimeout(S.actionRetryTimer);
    const delay = Math.max(backoff(S.actionAttempt++), S.retryAt - Date.now());
    S.actionRetryTimer = setTimeout(flushPending, delay);
  }
}

/* ------------------------------------------------------------------ sending */

export function sendAction(frame, callbacks = {}) {
  frame.client_id = frame.client_id || uuid();
  const entry = { frame, inflight: false, ...callbacks };
  S.pending.set(frame.client_id, entry);
  transmit(entry);
  return entry;
}

// Sends now when possible; otherwise the entry waits in S.pending for flushPending().
function transmit(entry) {
  if (S.transport === "ws") {
    if (S.connected) sendFrame(entry.frame);
  } else if (S.transport === "sse") {
    if (!entry.inflight) postAction(entry);
  }
}

export function flushPending() {
  for (const entry of S.pending.values()) transmit(entry);
}

// HTTP equivalents of the socket frames, used in SSE mode.
const HTTP_ROUTES = {
  message: "/messages",
  "handoff.request": "/handoff",
  "handoff.offer_reply": "/handoff/offer",
  lead: "/lead",
  continue_with_ai: "/continue",
  new_conversation: "/new",
  rate: "/rate",
  transcript: "/transcript",
  end_chat: "/end",
};

async function postAction(entry) {
  const { type, ...body } = entry.frame;
  const route = HTTP_ROUTES[type];
  if (!route) {
    S.pending.delete(entry.frame.client_id);
    return;
  }
  entry.inflight = true;
  let res;
  try {
    res = await api("POST", route, body);
  } catch (err) {
    entry.inflight = false;
    if (!err.status || err.status === 503 || err.code === "unavailable") {
      onUnavailable(err.retryAfter); // network trouble or a 503: keep it pending and try again
      return;
    }
    if (err.status === 401 && S.authRenewals < 2) {
      await renewSession().catch(() => null);
      if (S.pending.has(body.client_id)) postAction(entry);
      return;
    }
    handleFrame({ type: "error", code: err.code, detail: err.detail, client_id: body.client_id, retry_after: err.retryAfter });
    return;
  }
  entry.inflight = false;
  S.actionAttempt = 0;
  setDegraded(false);
  if (!S.pending.has(body.client_id)) return;
  if (type === "continue_with_ai" || type === "new_conversation") {
    S.pending.delete(body.client_id);
    handleFrame({ type: "switch", state: res && res.state });
    return;
  }
  handleFrame({ type: "ack", client_id: body.client_id, seq: res && res.seq });
  if (res && res.state) handleFrame({ type: "state", state: res.state });
}
