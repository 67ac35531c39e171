/*
 * WebSocket transport, the normal path: hello with last_seq so the server replays what we missed,
 * reconnects with backoff, a heartbeat, and the switch to SSE when sockets never worked here.
 */

import { WS_PATH } from "./config.js";
import { setConnected } from "./layout.js";
import { handleFrame } from "./protocol.js";
import { startSse } from "./sse.js";
import { S } from "./state.js";
import { clearTyping } from "./typing.js";
import { backoff } from "./util.js";

function wsUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}${WS_PATH}`;
}

export function connect() {
  if (S.stopped) return;
  // Fall back to SSE only when sockets never worked here (blocked by a proxy, say); once one has
  // worked, failures mean the server is away and the socket is retried with backoff.
  if (typeof window.WebSocket !== "function" || (S.wsFailures >= 2 && !S.wsEverOpened)) {
    startSse();
    return;
  }
  S.transport = "ws";
  document.body.dataset.transport = "ws";
  let opened = false;
  let ws;
  try {
    ws = new WebSocket(wsUrl());
  } catch (err) {
    S.wsFailures += 1;
    scheduleReconnect();
    return;
  }
  S.ws = ws;
  ws.onopen = () => {
    opened = true;
    S.wsEverOpened = true;
    S.wsFailures = 0;
    S.lastFrameAt = Date.now();
    ws.send(JSON.stringify({ type: "hello", token: S.token, conversation: S.convId, last_seq: S.lastSeq }));
    // No welcome within 15 s: treat the socket as dead rather than wait forever.
    clearTimeout(S.helloTimer);
    S.helloTimer = setTimeout(() => {
      if (S.ws === ws && !S.connected) dropSocket(ws, true);
    }, 15000);
  };
  ws.onmessage = (e) => {
    let frame;
    try {
      frame = JSON.parse(e.data);
    } catch (err) {
      return;
    }
    handleFrame(frame);
  };
  ws.onclose = () => {
    if (S.ws !== ws) return;
    if (!opened) S.wsFailures += 1; // twice in a row → SSE fallback (see connect())
    dropSocket(ws, false);
  };
}

// Forget a socket and schedule the next attempt. `close` also closes it (heartbeat timeout).
export function dropSocket(ws, close) {
  if (S.ws !== ws) return;
  S.ws = null;
  ws.onopen = ws.onmessage = ws.onclose = ws.onerror = null;
  if (close) {
    try {
      ws.close();
    } catch (err) {
      /* already closing */
    }
  }
  setConnected(false);
  clearTyping();
  scheduleReconnect();
}

function scheduleReconnect() {
  clearTimeout(S.reconnectTimer);
  if (S.stopped) return;
  // A first failed handshake is retried at once: the second decides about the SSE fallback.
  const delay = S.wsFailures === 1 && !S.wsEverOpened ? 300 : backoff(S.attempt++);
  // A server that said "unavailable" asked for a pause (Retry-After): no sooner than that.
  S.reconnectTimer = setTimeout(connect, Math.max(delay, S.retryAt - Date.now()));
}

// Ping every 25 s; a socket silent for 65 s is dead even if the browser hasn't noticed.
export function startHeartbeat() {
  clearInterval(S.heartbeat);
  S.heartbeat = setInterval(() => {
    if (S.transport !== "ws" || !S.ws) return;
    if (S.connected && Date.now() - S.lastFrameAt > 65000) dropSocket(S.ws, true);
    else if (S.connected) sendFrame({ type: "ping" });
  }, 25000);
}

// Come back quickly after sleep / network changes instead of waiting out the backoff.
export function reconnectNow() {
  if (S.stopped || S.connected) return;
  S.attempt = 0;
  if (S.transport === "ws" && !S.ws) {
    clearTimeout(S.reconnectTimer);
    connect();
  } else if (S.transport === "sse" && S.sseWake) {
    S.sseWake();
  }
}

export function sendFrame(frame) {
  if (S.transport !== "ws" || !S.ws || S.ws.readyState !== WebSocket.OPEN) return false;
  try {
    S.ws.send(JSON.stringify(frame));
    return true;
  } catch (err) {
    return false;
  }
}
