/*
 * No silent gaps. Pub/sub delivers a frame at most once, and an HTTP ack can overtake a cut SSE
 * stream, so the widget cannot trust "the newest seq I saw" as its position. S.lastSeq is the
 * highest *contiguous* seq: every event 1..S.lastSeq is on screen. Seqs seen past a hole wait in
 * S.seenAbove; any sign that the server is past S.lastSeq (an event or an ack past a hole, a state
 * whose last_seq is higher) schedules one fetch of GET /events?after_seq=S.lastSeq, whose events
 * go through the normal onEvent() path (deduplicated by seq, inserted in seq order). One fetch at
 * a time, debounced (a frame that is merely late arrives first), never closer than
 * MIN_FETCH_INTERVAL, retried with backoff.
 *
 * Every event of a conversation is sent to its visitor (the widget's events endpoint and frames
 * filter no kind), so seqs are contiguous over what the widget receives. Should a seq ever be
 * missing from the server's answer, the answer still closes the hole: a fetch returns every stored
 * event after after_seq in one read, so nothing at or below its highest seq can arrive later.
 *
 * The console runs the same algorithm (static/console/gaps.js, a GapTracker class) and the two are
 * kept aligned by hand rather than shared: the widget's position is S.lastSeq, which the socket's
 * hello, the SSE Last-Event-ID and a conversation switch read and reset, its answer also carries
 * the state, and the widget's /events has no page limit (it is also how a conversation's history
 * loads), so it never says `has_more` — the console's always-complete case.
 */

import { api } from "./api.js";
import { applyState, onEvent } from "./conversation.js";
import { mutate } from "./layout.js";
import { S } from "./state.js";
import { backoff } from "./util.js";

export const PAST_GAP_DELAY = 300; // an event or ack past a hole: the missing frame may just be late
const STATE_DELAY = 1000; // a state frame may precede its event frame by a moment
const MIN_FETCH_INTERVAL = 250; // whatever asks, the server is not asked in a tight loop

// A seq of the conversation on screen is now shown (an event, or our own acked message).
export function markSeen(seq) {
  if (seq <= S.lastSeq) return;
  S.seenAbove.add(seq);
  while (S.seenAbove.delete(S.lastSeq + 1)) S.lastSeq += 1;
  if (S.seenAbove.size) scheduleGapFetch(PAST_GAP_DELAY);
}

// The server says the conversation on screen reached `seq` (a state's last_seq, an action's ack).
export function noteServerSeq(seq, delay = STATE_DELAY) {
  if (typeof seq !== "number" || seq <= S.lastSeq) return;
  S.serverSeq = Math.max(S.serverSeq, seq);
  scheduleGapFetch(delay);
}

// A new conversation on screen: forget the old one's holes (an answer in flight is then ignored).
export function resetGaps() {
  S.seenAbove.clear();
  S.serverSeq = 0;
  S.gapAttempt = 0;
  clearTimeout(S.gapTimer);
  S.gapTimer = 0;
  S.gapDueAt = 0;
}

function behind() {
  return S.seenAbove.size > 0 || S.serverSeq > S.lastSeq;
}

function scheduleGapFetch(delay) {
  if (S.gapInFlight) return; // it looks again when it ends
  const now = Date.now();
  const due = Math.max(now + delay, S.gapFetchedAt + MIN_FETCH_INTERVAL);
  if (S.gapTimer && S.gapDueAt <= due) return; // an earlier check is already planned
  clearTimeout(S.gapTimer);
  S.gapDueAt = due;
  S.gapTimer = setTimeout(fetchGap, due - now);
}

async function fetchGap() {
  S.gapTimer = 0;
  S.gapDueAt = 0;
  const convId = S.convId;
  if (!convId || S.gapInFlight || !behind()) return;
  S.gapInFlight = true;
  const after = S.lastSeq;
  const seenBefore = new Set(S.seenAbove);
  const serverBefore = S.serverSeq;
  let data = null;
  try {
    data = await api("GET", `/events?conversation=${encodeURIComponent(convId)}&after_seq=${after}`);
  } catch (err) {
    data = null;
  }
  S.gapInFlight = false;
  S.gapFetchedAt = Date.now();
  if (convId !== S.convId) {
    if (behind()) scheduleGapFetch(PAST_GAP_DELAY); // switched meanwhile: the new conversation's turn
    return;
  }
  if (!data) {
    scheduleGapFetch(backoff(S.gapAttempt++)); // offline or 503: try again, slower each time
    return;
  }
  S.gapAttempt = 0;
  const events = Array.isArray(data.events) ? data.events : [];
  mutate(() => {
    for (const ev of events) onEvent(ev, true);
  });
  if (data.state) applyState(data.state); // an older snapshot than the one on screen never wins
  // The answer holds every event stored after `after` when it was read: no seq up to its highest
  // can come later, and a seq noted before the request but missing from it is not this
  // conversation's (an ack that raced a conversation switch), so it must not keep us fetching.
  const top = events.reduce((max, ev) => (typeof ev.seq === "number" ? Math.max(max, ev.seq) : max), after);
  S.lastSeq = Math.max(S.lastSeq, top);
  for (const seq of S.seenAbove) if (seq <= S.lastSeq || seenBefore.has(seq)) S.seenAbove.delete(seq);
  while (S.seenAbove.delete(S.lastSeq + 1)) S.lastSeq += 1;
  if (S.serverSeq === serverBefore) S.serverSeq = Math.min(S.serverSeq, S.lastSeq);
  // Frames that arrived during the request may show a newer hole: look again, without hammering.
  if (behind()) scheduleGapFetch(PAST_GAP_DELAY);
}
