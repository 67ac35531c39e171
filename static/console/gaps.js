// No silent gaps in a conversation view (the widget does the same, static/widget/chat/gaps.js).
//
// Pub/sub delivers a frame at most once, so "the newest seq I saw" is not a safe position. The
// tracker keeps the highest *contiguous* seq (every event 1..position is on the page) and the seqs
// seen past a hole. An event or an ack past a hole, or a server seq ahead of the position (the
// watch's last_seq, a state's last_seq), schedules one fetch of the events after the position:
// debounced (a late frame arrives first), never two at once, never closer than MIN_FETCH_INTERVAL,
// retried with backoff on failure. Every event of a conversation reaches the console, so seqs are
// contiguous over what it shows; still, an answer closes every hole up to its highest seq, as it
// holds every event stored after the position when it was read — all of them unless the server
// says `has_more` (its page limit cut the answer), and then the view asks on from the answer's end.
//
// The widget runs the same algorithm over its own state (static/widget/chat/gaps.js); see there why
// the two are not one module.

const PAST_GAP_DELAY = 300;
const SERVER_DELAY = 1000;
const MIN_FETCH_INTERVAL = 250; // whatever asks (a page that keeps coming back full), no tighter loop

export class GapTracker {
  /**
   * @param {number} position the contiguous seq the page starts from (server-rendered thread)
   * @param {(after: number) => Promise<{events: object[], last_seq: number}>} fetchAfter
   * @param {(events: object[]) => void} apply shows the fetched events (deduplicated by seq)
   */
  constructor(position, fetchAfter, apply) {
    this.position = position;
    this.above = new Set();
    this.serverSeq = 0;
    this.fetchAfter = fetchAfter;
    this.apply = apply;
    this.timer = 0;
    this.dueAt = 0;
    this.inFlight = false;
    this.attempt = 0;
    this.fetchedAt = 0;
  }

  /** A seq is now on the page. */
  seen(seq) {
    if (!Number.isInteger(seq) || seq <= this.position) return;
    this.above.add(seq);
    while (this.above.delete(this.position + 1)) this.position += 1;
    if (this.above.size) this.schedule(PAST_GAP_DELAY);
  }

  /** The server says the conversation reached ``seq``. */
  serverAt(seq, delay = SERVER_DELAY) {
    if (!Number.isInteger(seq) || seq <= this.position) return;
    this.serverSeq = Math.max(this.serverSeq, seq);
    this.schedule(delay);
  }

  behind() {
    return this.above.size > 0 || this.serverSeq > this.position;
  }

  schedule(delay) {
    if (this.inFlight) return; // it looks again when it ends
    const now = Date.now();
    const due = Math.max(now + delay, this.fetchedAt + MIN_FETCH_INTERVAL);
    if (this.timer && this.dueAt <= due) return;
    clearTimeout(this.timer);
    this.dueAt = due;
    this.timer = setTimeout(() => this.fetch(), due - now);
  }

  async fetch() {
    this.timer = 0;
    this.dueAt = 0;
    if (this.inFlight || !this.behind()) return;
    this.inFlight = true;
    const after = this.position;
    const seenBefore = new Set(this.above);
    const serverBefore = this.serverSeq;
    let data = null;
    try {
      data = await this.fetchAfter(after);
    } catch {
      data = null;
    }
    this.inFlight = false;
    this.fetchedAt = Date.now();
    if (!data) {
      const base = Math.min(10000, 500 * 2 ** Math.min(this.attempt++, 5));
      this.schedule(base / 2 + Math.random() * (base / 2)); // offline or 503: slower each time
      return;
    }
    this.attempt = 0;
    const events = Array.isArray(data.events) ? data.events : [];
    this.apply(events);
    const top = events.reduce((max, ev) => (Number.isInteger(ev.seq) ? Math.max(max, ev.seq) : max), after);
    this.position = Math.max(this.position, top);
    // A seq noted before the request but missing from a complete answer is not this conversation's.
    // Only the server knows whether its page limit cut the answer: "fewer seqs than last_seq" would
    // also be true forever once the last events were deleted (the admin can), and refetch in a loop.
    const full = data.has_more === true && top > after;
    if (full) this.serverSeq = Math.max(this.serverSeq, data.last_seq);
    for (const seq of this.above) if (seq <= this.position || (!full && seenBefore.has(seq))) this.above.delete(seq);
    while (this.above.delete(this.position + 1)) this.position += 1;
    if (!full && this.serverSeq === serverBefore) this.serverSeq = Math.min(this.serverSeq, this.position);
    if (this.behind()) this.schedule(full ? 0 : PAST_GAP_DELAY);
  }
}
