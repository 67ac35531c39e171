/*
 * SSE fallback for networks that block WebSockets: the stream is read with fetch(), because
 * EventSource cannot send the Authorization header, and resumes with Last-Event-ID. Actions go over
 * HTTP meanwhile (protocol.js).
 */

import { renewSession } from "./api.js";
import { API, T } from "./config.js";
import { setConnected, setDegraded, showNotice } from "./layout.js";
import { flushPending, handleFrame } from "./protocol.js";
import { S } from "./state.js";
import { backoff } from "./util.js";

export function startSse() {
  if (S.transport === "sse") return;
  S.transport = "sse";
  document.body.dataset.transport = "sse";
  clearInterval(S.heartbeat);
  sseLoop();
}

async function sseLoop() {
  while (!S.stopped) {
    const ctrl = new AbortController();
    S.sseAbort = ctrl;
    let watchdog = 0;
    const touch = () => {
      S.lastFrameAt = Date.now();
      clearTimeout(watchdog);
      watchdog = setTimeout(() => ctrl.abort(), 45000); // keepalives come every 15 s
    };
    try {
      const query = S.convId ? `?conversation=${encodeURIComponent(S.convId)}` : "";
      const headers = { Accept: "text/event-stream", "Last-Event-ID": String(S.lastSeq) };
      if (S.token) headers.Authorization = `Bearer ${S.token}`;
      touch();
      const res = await fetch(`${API}/stream${query}`, { headers, signal: ctrl.signal, credentials: "omit", cache: "no-store" });
      if (res.status === 401) {
        clearTimeout(watchdog);
        if (S.authRenewals >= 3) {
          S.stopped = true;
          showNotice(T.sessionLost, 600000);
          return;
        }
        await renewSession().catch(() => null);
        continue;
      }
      if (res.status === 503) {
        // Redis is away: say so at once and wait at least as long as the server asked.
        const seconds = Number(res.headers.get("Retry-After")) || 0;
        S.retryAt = Math.max(S.retryAt, Date.now() + seconds * 1000);
        setDegraded(true);
      }
      if (!res.ok || !res.body) throw new Error(`stream HTTP ${res.status}`);
      S.authRenewals = 0;
      setDegraded(false); // the stream subscribed in Redis: it is back
      setConnected(true);
      flushPending();
      await readEventStream(res.body, (frame) => {
        touch();
        if (frame) handleFrame(frame);
      });
    } catch (err) {
      /* fall through to reconnect */
    }
    clearTimeout(watchdog);
    const aborted = ctrl.signal.aborted;
    setConnected(false);
    if (S.stopped) return;
    // An abort we asked for (conversation switch) reconnects at once; failures back off.
    if (!aborted || Date.now() - S.lastFrameAt > 40000) {
      await new Promise((resolve) => {
        S.sseWake = resolve;
        setTimeout(resolve, Math.max(backoff(S.attempt++), S.retryAt - Date.now()));
      });
      S.sseWake = null;
    }
  }
}

// Minimal text/event-stream parser: id / event / data fields, ":" comments, blank-line dispatch.
async function readEventStream(body, onFrame) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let data = [];
  let name = "";
  const dispatch = () => {
    if (data.length) {
      let frame = null;
      try {
        frame = JSON.parse(data.join("\n"));
      } catch (err) {
        frame = null;
      }
      if (frame && typeof frame === "object" && !frame.type) frame.type = name || "message";
      onFrame(frame);
    }
    data = [];
    name = "";
  };
  const onLine = (line) => {
    if (line === "") {
      dispatch();
    } else if (line[0] === ":") {
      onFrame(null); // keepalive comment: proves the stream is alive
    } else {
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      let val = colon < 0 ? "" : line.slice(colon + 1);
      if (val[0] === " ") val = val.slice(1);
      if (field === "data") data.push(val);
      else if (field === "event") name = val;
      // "id" is the event's seq; handleFrame tracks the contiguous position (S.lastSeq). "retry" is ignored.
    }
  };
  for (;;) {
    const { value, done } = await reader.read();
    buffer += done ? decoder.decode() : decoder.decode(value, { stream: true });
    for (;;) {
      const match = /\r\n|\r|\n/.exec(buffer);
      if (!match) break;
      // A lone "\r" at the very end may be the first half of "\r\n": wait for more bytes.
      if (!done && match[0] === "\r" && match.index === buffer.length - 1) break;
      onLine(buffer.slice(0, match.index));
      buffer = buffer.slice(match.index + match[0].length);
    }
    if (done) return; // an unterminated last event is dropped, as EventSource does
  }
}
