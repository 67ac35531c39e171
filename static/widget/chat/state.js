/*
 * The widget's one mutable model. S holds the conversation on screen (its id, latest snapshot and
 * the events rendered so far, keyed by seq), the client actions awaiting an ack, and the
 * connection's bookkeeping; ui holds the element references the builders fill in. Modules share
 * these two objects by mutating their fields, never by rebinding them, which is what lets plain ES
 * modules share state without a framework.
 */

import { EMBEDDED } from "./config.js";

export const S = {
  token: null,
  convId: null, // the conversation on screen
  state: null, // its latest snapshot
  lastSeq: 0, // highest *contiguous* seq on screen: 1..lastSeq all shown (sent as last_seq / Last-Event-ID)
  seenAbove: new Set(), // seqs shown past a hole above lastSeq (gaps.js fetches the hole)
  serverSeq: 0, // the highest seq the server said it has (state last_seq, acks)
  gapTimer: 0,
  gapDueAt: 0,
  gapInFlight: false,
  gapAttempt: 0,
  gapFetchedAt: 0, // when the last gap fetch ended (gaps.js spaces them)
  rendered: new Map(), // seq → row element (null for events with no visible line)
  pending: new Map(), // client_id → {frame, el?, inflight?, onAck?, onError?}
  offers: [], // {seq, buttons, answered}
  offerClosedSeq: 0, // seq of the last event that makes earlier offers moot
  typing: { ai: false, agent: false },
  typingName: "", // the agent's public name from their "typing" frame
  typingAgentTimer: 0,
  typingTimer: 0,
  draft: null, // {replyTo, row, text, timer}
  open: !EMBEDDED, // a standalone frame is always "open"
  unread: 0,
  pageUrl: null,
  transport: null, // "ws" | "sse"
  ws: null,
  wsFailures: 0,
  wsEverOpened: false,
  helloTimer: 0,
  attempt: 0,
  reconnectTimer: 0,
  heartbeat: 0,
  lastFrameAt: 0,
  connected: false,
  connectedAt: 0,
  everConnected: false,
  bannerTimer: 0,
  sseAbort: null,
  sseWake: null, // ends the SSE loop's backoff wait early (reconnectNow)
  authRenewals: 0,
  renewing: null,
  panelKey: "",
  lastView: "",
  historyGen: 0,
  noticeTimer: 0,
  stopped: false,
  blipOver: false, // disconnected for longer than a blip: the banner shows
  degraded: false, // the server answered "unavailable" (503) or could not be reached for an action
  retryAt: 0, // Date.now() before which the server asked not to be retried (Retry-After)
  actionAttempt: 0, // backoff step of the HTTP action retries (SSE mode)
  actionRetryTimer: 0,
};

// Element references, filled in by buildUI(), the builders it calls and the panel's phone form.
export const ui = {};

// pending | active | busy → the handoff's own status; closed → resolved; otherwise the AI chat.
export function viewState() {
  const s = S.state;
  if (!s) return "ai";
  if (s.status === "closed") return "resolved";
  if (s.status === "handoff" && s.handoff) {
    const h = s.handoff.status;
    if (h === "pending" || h === "active" || h === "busy") return h;
    if (h === "resolved") return "resolved";
  }
  return "ai";
}

export function sameConversation(frame) {
  return !frame.conversation || !S.convId || frame.conversation === S.convId;
}
