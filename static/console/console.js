// The console's live connection, shared by every console page (ES modules load once per page).
//
// One WebSocket to /ws/console/ (session-authenticated). It keeps the sidebar's red badge and the
// tab title's "(3)" in step with the unclaimed count, beeps on a new handoff (an agent can turn the
// sound off; the choice is kept in localStorage), and lets page scripts watch one conversation:
// after a reconnect it asks again with the last seq the page has, and the server replays the gap.
// When the server closes it because the session ended (logout, deactivation, password change,
// expiry: code 4401) it stays closed and the page says so, with a link to sign in again.

import { formatDateTime, formatTime, gettext, interpolate, ngettext, pgettext } from "./i18n.js";

const SOUND_KEY = "pivra.console.sound";
const PING_MS = 25_000;
const MAX_BACKOFF_MS = 15_000;
// How long a reply or claim waits for its answer over the socket before it is sent over HTTP instead.
const COMMAND_TIMEOUT_MS = 5_000;
// Errors about the socket or the frame, not refusals of the command: it is sent over HTTP at once,
// whose answer is the final word (the same client id: a reply is stored once).
const SOCKET_ERROR_CODES = new Set([
  "unavailable",
  "server_error",
  "frame_too_large",
  "invalid_json",
  "invalid_frame",
  "invalid_input",
  "unknown_type",
]);
const CLOSE_SESSION_ENDED = 4401;
const CLOSE_NO_WORKSPACE = 4403; // the "revoked" frame before it reloads the page
// The user has too many console tabs open (the server's cap): final, the page says to close some.
const CLOSE_TOO_MANY_SOCKETS = 4429;

const script = document.querySelector("script[data-console-socket]");
export const workspaceId = Number(script?.dataset.workspace || 0) || null;

export class ConsoleSocket extends EventTarget {
  constructor(url) {
    super();
    this.url = url;
    this.ws = null;
    this.backoff = 500;
    this.watchTarget = null;
    this.pingTimer = null;
    this.retryTimer = null;
    this.everConnected = false;
    this.ended = false;
    this.connect();
    // Come back at once when the network or the tab does.
    window.addEventListener("online", () => this.reconnectNow());
    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") this.reconnectNow();
    });
  }

  get open() {
    return this.ws !== null && this.ws.readyState === WebSocket.OPEN;
  }

  connect() {
    clearTimeout(this.retryTimer);
    if (this.ended) return;
    let ws;
    try {
      ws = new WebSocket(this.url);
    } catch {
      this.scheduleReconnect();
      return;
    }
    this.ws = ws;
    ws.addEventListener("open", () => {
      // The backoff starts over at "welcome", not here: a server that accepts and closes at once
      // (4503 while Redis is away) must not be retried every half second.
      this.dispatchEvent(new CustomEvent("status", { detail: { connected: true, resumed: this.everConnected } }));
      this.everConnected = true;
      if (this.watchTarget) this.sendWatch();
      clearInterval(this.pingTimer);
      this.pingTimer = setInterval(() => this.send({ type: "ping" }), PING_MS);
    });
    ws.addEventListener("message", (message) => {
      let frame;
      try {
        frame = JSON.parse(message.data);
      } catch {
        return;
      }
      if (!frame || typeof frame.type !== "string") return;
      if (frame.type === "welcome") this.backoff = 500;
      this.dispatchEvent(new CustomEvent(frame.type, { detail: frame }));
      this.dispatchEvent(new CustomEvent("frame", { detail: frame }));
    });
    ws.addEventListener("close", (event) => {
      clearInterval(this.pingTimer);
      if (this.ws === ws) {
        this.ws = null;
        this.dispatchEvent(new CustomEvent("status", { detail: { connected: false } }));
        if (event.code === CLOSE_SESSION_ENDED || event.code === CLOSE_NO_WORKSPACE || event.code === CLOSE_TOO_MANY_SOCKETS) {
          // Final: reconnecting cannot help. Say so instead of retrying forever.
          this.ended = true;
          clearTimeout(this.retryTimer);
          this.dispatchEvent(new CustomEvent("ended", { detail: { code: event.code } }));
          return;
        }
        this.scheduleReconnect();
      }
    });
  }

  scheduleReconnect() {
    clearTimeout(this.retryTimer);
    const delay = this.backoff * (0.75 + Math.random() * 0.5);
    this.backoff = Math.min(this.backoff * 2, MAX_BACKOFF_MS);
    this.retryTimer = setTimeout(() => this.connect(), delay);
  }

  reconnectNow() {
    if (this.ws === null && !this.ended) {
      this.backoff = 500;
      this.connect();
    }
  }

  send(frame) {
    if (!this.open) return false;
    this.ws.send(JSON.stringify(frame));
    return true;
  }

  /**
   * A reply or claim over the socket (no HTTP request: no parse, middleware, session load or CSRF).
   * Resolves to the ``ack``; rejects with the server's ``{code, detail}`` (``error.refused``) or, when
   * the socket is down, closes or stays silent, with ``error.refused`` false — the caller then sends
   * the same command over HTTP with the same client id, which the server stores once.
   */
  command(frame, timeoutMs = COMMAND_TIMEOUT_MS) {
    return new Promise((resolve, reject) => {
      const ws = this.ws;
      const down = (message) => Object.assign(new Error(message), { refused: false });
      if (!this.open || !this.send(frame)) {
        reject(down("The live connection is down."));
        return;
      }
      const done = () => {
        clearTimeout(timer);
        this.removeEventListener("frame", onFrame);
        this.removeEventListener("status", onStatus);
      };
      const onFrame = (event) => {
        const answer = event.detail;
        if (answer.client_id !== frame.client_id || (answer.type !== "ack" && answer.type !== "error")) return;
        done();
        // "unavailable" (Redis or PostgreSQL away): the banner says "reconnecting" while the page
        // sends it over HTTP, same client id; an answered command means the server is whole again.
        if (answer.type === "ack" || answer.code === "unavailable") noteApiReachable(answer.type === "ack");
        if (answer.type === "ack") resolve(answer);
        else reject(Object.assign(new Error(answer.detail), { code: answer.code, refused: !SOCKET_ERROR_CODES.has(answer.code) }));
      };
      const onStatus = () => {
        if (this.ws !== ws || !this.open) {
          done();
          reject(down("The live connection dropped."));
        }
      };
      const timer = setTimeout(() => {
        done();
        reject(down("The live connection did not answer."));
      }, timeoutMs);
      this.addEventListener("frame", onFrame);
      this.addEventListener("status", onStatus);
    });
  }

  /** Follow one conversation; ``lastSeq`` is a function so a reconnect asks from where the page is. */
  watch(conversation, lastSeq) {
    this.watchTarget = { conversation, lastSeq };
    this.sendWatch();
  }

  sendWatch() {
    const target = this.watchTarget;
    if (target) this.send({ type: "watch", conversation: target.conversation, last_seq: target.lastSeq() });
  }

  unwatch() {
    this.watchTarget = null;
    this.send({ type: "unwatch" });
  }
}

function socketUrl() {
  const scheme = window.location.protocol === "https:" ? "wss:" : "ws:";
  return `${scheme}//${window.location.host}/ws/console/`;
}

export const consoleSocket = new ConsoleSocket(socketUrl());

// --- the unclaimed count: sidebar badge and tab title ----------------------------------------

const TITLE_COUNT = /^\(\d+\)\s+/;

export function setUnclaimed(count) {
  const n = Math.max(0, Number(count) || 0);
  for (const badge of document.querySelectorAll("[data-unclaimed-badge]")) {
    badge.textContent = String(n);
    badge.hidden = n === 0;
    badge.setAttribute("aria-label", interpolate(ngettext("%(n)s unclaimed handoff", "%(n)s unclaimed handoffs", n), { n }, true));
  }
  const base = document.title.replace(TITLE_COUNT, "");
  document.title = n > 0 ? `(${n}) ${base}` : base;
}

consoleSocket.addEventListener("welcome", (event) => {
  const mine = (event.detail.workspaces || []).find((w) => w.id === workspaceId);
  if (mine) setUnclaimed(mine.unclaimed);
});

consoleSocket.addEventListener("queue", (event) => {
  if (event.detail.workspace === workspaceId) setUnclaimed(event.detail.unclaimed);
});

// Removed from this page's workspace: reload, so the server shows what the agent may still see.
consoleSocket.addEventListener("revoked", (event) => {
  if ((event.detail.workspaces || []).includes(workspaceId)) window.location.reload();
});

/** A translated sentence with a link in it: the text around ``%(link)s`` as text nodes, the link in its place. */
function withLink(sentence, link) {
  const [before, after = ""] = sentence.split("%(link)s");
  return [before, link, after].filter((part) => part !== "");
}

// The session ended: a message at the top of the page with a way back in (the login page sends a
// still-signed-in agent straight back, e.g. after changing their own password in another tab).
// Too many tabs: this one stays quiet (no reconnect loop against the cap) and says how to go live again.
consoleSocket.addEventListener("ended", (event) => {
  if (event.detail.code !== CLOSE_TOO_MANY_SOCKETS || document.querySelector("[data-too-many-tabs]")) return;
  const box = document.createElement("ul");
  box.className = "flash";
  box.setAttribute("role", "alert");
  box.dataset.tooManyTabs = "";
  const item = document.createElement("li");
  item.className = "flash-error";
  const link = document.createElement("a");
  link.href = window.location.pathname + window.location.search;
  // Translators: the link text of "Too many Pivra tabs are open: … Close some tabs, then %(link)s".
  link.textContent = gettext("reload this page.");
  item.append(...withLink(gettext("Too many Pivra tabs are open: this one is not live. Close some tabs, then %(link)s"), link));
  box.append(item);
  (document.getElementById("main") || document.body).prepend(box);
});

consoleSocket.addEventListener("ended", (event) => {
  if (event.detail.code !== CLOSE_SESSION_ENDED || document.querySelector("[data-session-ended]")) return;
  const next = encodeURIComponent(window.location.pathname + window.location.search);
  const box = document.createElement("ul");
  box.className = "flash";
  box.setAttribute("role", "alert");
  box.dataset.sessionEnded = "";
  const item = document.createElement("li");
  item.className = "flash-error";
  const link = document.createElement("a");
  link.href = `/accounts/login/?next=${next}`;
  link.textContent = gettext("Sign in again.");
  item.append(...withLink(gettext("Your session ended. %(link)s"), link));
  box.append(item);
  (document.getElementById("main") || document.body).prepend(box);
});

// --- "Connection lost — reconnecting…" ------------------------------------------------------------
// Shown while the socket is down (past a short blip), or after an API call could not reach Pivra or
// answered 503 or a socket command was answered "unavailable" (Redis or PostgreSQL away); hidden once a
// socket says welcome again (which needs both, so the server is whole), answers a command, or an API
// call works. Not after a final close: the session-ended message says what to do instead.

const BANNER_BLIP_MS = 1500;
const connection = { socketDown: false, apiDown: false, blipOver: false, timer: 0 };

function renderConnectionBanner() {
  const banner = document.querySelector("[data-connection-banner]");
  if (!banner) return;
  const lost = !consoleSocket.ended && (connection.apiDown || (connection.socketDown && connection.blipOver));
  const text = lost ? gettext("Connection lost — reconnecting…") : "";
  if (banner.textContent !== text) banner.textContent = text;
}

export function noteApiReachable(reachable) {
  connection.apiDown = !reachable;
  renderConnectionBanner();
}

consoleSocket.addEventListener("status", (event) => {
  if (event.detail.connected) return; // "open" is not enough: the server may close it at once (4503)
  if (connection.socketDown) return;
  connection.socketDown = true;
  connection.blipOver = false;
  clearTimeout(connection.timer);
  connection.timer = setTimeout(() => {
    connection.blipOver = true;
    renderConnectionBanner();
  }, BANNER_BLIP_MS);
});

consoleSocket.addEventListener("welcome", () => {
  clearTimeout(connection.timer);
  connection.socketDown = false;
  connection.apiDown = false;
  renderConnectionBanner();
});

consoleSocket.addEventListener("ended", renderConnectionBanner);

// --- a short sound on a new handoff --------------------------------------------------------------

export function soundEnabled() {
  try {
    return window.localStorage.getItem(SOUND_KEY) !== "off";
  } catch {
    return true;
  }
}

function setSoundEnabled(on) {
  try {
    window.localStorage.setItem(SOUND_KEY, on ? "on" : "off");
  } catch {
    /* private mode: the choice lasts for this page only */
  }
  renderSoundToggles();
}

let audio = null;

function audioContext() {
  const Context = window.AudioContext || window.webkitAudioContext;
  if (!Context) return null;
  audio = audio || new Context();
  return audio;
}

// Browsers keep audio suspended until the user interacts with the page: unlock on the first gesture.
function unlockAudio() {
  const ctx = audioContext();
  if (ctx && ctx.state === "suspended") ctx.resume().catch(() => {});
}
window.addEventListener("pointerdown", unlockAudio, { once: true, capture: true });
window.addEventListener("keydown", unlockAudio, { once: true, capture: true });

export function beep() {
  if (!soundEnabled()) return;
  const ctx = audioContext();
  if (!ctx) return;
  if (ctx.state === "suspended") ctx.resume().catch(() => {});
  const start = ctx.currentTime + 0.01;
  [
    [880, 0],
    [1320, 0.13],
  ].forEach(([frequency, offset]) => {
    const osc = ctx.createOscillator();
    const gain = ctx.createGain();
    osc.type = "sine";
    osc.frequency.value = frequency;
    gain.gain.setValueAtTime(0.0001, start + offset);
    gain.gain.exponentialRampToValueAtTime(0.18, start + offset + 0.015);
    gain.gain.exponentialRampToValueAtTime(0.0001, start + offset + 0.12);
    osc.connect(gain).connect(ctx.destination);
    osc.start(start + offset);
    osc.stop(start + offset + 0.13);
  });
}

const announced = new Set();
consoleSocket.addEventListener("event", (event) => {
  const frame = event.detail;
  if (frame.kind !== "handoff.requested" || frame.workspace !== workspaceId) return;
  if (announced.has(frame.conversation)) return;
  announced.add(frame.conversation);
  beep();
});

function renderSoundToggles() {
  const on = soundEnabled();
  for (const button of document.querySelectorAll("[data-sound-toggle]")) {
    button.setAttribute("aria-pressed", String(on));
    const label = button.querySelector("[data-sound-label]");
    if (label) label.textContent = on ? gettext("Sound on") : gettext("Sound off");
  }
}

for (const button of document.querySelectorAll("[data-sound-toggle]")) {
  button.addEventListener("click", () => {
    const on = !soundEnabled();
    setSoundEnabled(on);
    if (on) beep(); // a sample, and it unlocks audio in this tab
  });
}
renderSoundToggles();

// --- small helpers shared by the page scripts -----------------------------------------------

export function csrfToken() {
  const input = document.querySelector("input[name=csrfmiddlewaretoken]");
  if (input) return input.value;
  const cookie = document.cookie.split("; ").find((c) => c.startsWith("csrftoken="));
  return cookie ? decodeURIComponent(cookie.split("=")[1]) : "";
}

/** POST JSON to the console API; resolves to the body, or throws an Error whose message is readable. */
export async function postJson(url, body) {
  return sendJson(url, body, "POST");
}

/** Send JSON to the console API with ``method`` (POST, PUT); the same answers and errors as postJson. */
export async function sendJson(url, body, method) {
  let response;
  try {
    response = await fetch(url, {
      method,
      credentials: "same-origin",
      headers: { "Content-Type": "application/json", "X-CSRFToken": csrfToken(), Accept: "application/json" },
      body: JSON.stringify(body || {}),
    });
  } catch {
    noteApiReachable(false);
    throw new Error(gettext("Can't reach Pivra. Check your connection and try again."));
  }
  noteApiReachable(response.status !== 503);
  let data = null;
  try {
    data = await response.json();
  } catch {
    data = null;
  }
  if (!response.ok) {
    let detail = data && typeof data.detail === "string" ? data.detail : null;
    if (!detail && response.status === 403) detail = gettext("Your session has expired. Reload the page and log in again.");
    if (!detail && response.status === 401) detail = gettext("You are logged out. Reload the page and log in again.");
    const fallback = interpolate(gettext("Something went wrong (HTTP %(status)s). Please try again."), { status: response.status }, true);
    const error = new Error(detail || fallback);
    error.code = data && data.code;
    error.status = response.status;
    throw error;
  }
  return data;
}

/** A short duration ("42s", "3m 05s", "2h 07m", "1d 4h"); the unit letters are the translators'. */
export function durationText(seconds) {
  const s = Math.max(0, Math.floor(seconds));
  if (s < 60) return interpolate(pgettext("duration", "%(s)ss"), { s }, true);
  const m = Math.floor(s / 60);
  const pad = (n) => String(n).padStart(2, "0");
  if (m < 60) return interpolate(pgettext("duration", "%(m)sm %(s)ss"), { m, s: pad(s % 60) }, true);
  const h = Math.floor(m / 60);
  if (h < 24) return interpolate(pgettext("duration", "%(h)sh %(m)sm"), { h, m: pad(m % 60) }, true);
  return interpolate(pgettext("duration", "%(d)sd %(h)sh"), { d: Math.floor(h / 24), h: h % 24 }, true);
}

/** Tick every "[data-since]" (time waiting) once a second, from the server's timestamps. */
export function startTicking(root = document) {
  const tick = () => {
    const now = Date.now();
    for (const el of root.querySelectorAll("[data-since]")) {
      const since = Date.parse(el.dataset.since);
      if (!Number.isNaN(since)) el.textContent = durationText((now - since) / 1000);
    }
  };
  tick();
  return setInterval(tick, 1000);
}

// What toLocaleString() shows (numeric date, time with seconds), in the agent's language.
const FULL_DATE_TIME = { year: "numeric", month: "numeric", day: "numeric", hour: "numeric", minute: "numeric", second: "numeric" };
const sameDay = (a, b) => a.toDateString() === b.toDateString();

/** A timestamp in the agent's time zone and language: the time today, else the day and time. */
export function localTime(iso) {
  const date = new Date(iso);
  if (Number.isNaN(date.getTime())) return "";
  return sameDay(date, new Date()) ? formatTime(date) : formatDateTime(date);
}

/** Show "[data-local]" timestamps in the agent's own time zone. */
export function localizeTimes(root = document) {
  for (const el of root.querySelectorAll("time[data-local]")) {
    const text = localTime(el.getAttribute("datetime"));
    if (text) {
      el.textContent = text;
      el.title = formatDateTime(el.getAttribute("datetime"), FULL_DATE_TIME);
    }
  }
}
