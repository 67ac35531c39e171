/*
 * Pivra chat widget: the visitor-facing UI that runs inside Pivra's iframe.
 *
 * Protocol: README.md, "Widget protocol". In short: POST /session → GET /events (history) → WebSocket
 * (hello / welcome / event / state / ack …), falling back to an SSE stream read with fetch() plus
 * HTTP POSTs when a socket cannot be opened. Both transports feed the same handleFrame().
 *
 * Rules this file keeps everywhere:
 *  - Text from the server or the visitor is inserted with textContent / text nodes, never as HTML.
 *  - postMessage goes only to config.parentOrigin; messages are accepted only from it.
 *  - Events are deduplicated by seq and kept in seq order, whatever order they arrive in.
 *  - Every client action carries a client_id and stays "pending" until acked, so it can be resent
 *    with the same id after a reconnect (the server dedupes).
 */

/* ------------------------------------------------------------------ config & strings */

const CONFIG = readConfig();
const DEFAULT_ACCENT = "#4f46e5";
const ACCENT = safeColor(CONFIG.accentColor) || DEFAULT_ACCENT;
const MAX_LEN = Number(CONFIG.maxLength) > 0 ? Math.floor(Number(CONFIG.maxLength)) : 2000;
const API = String(CONFIG.apiBase || "/api/widget").replace(/\/+$/, "");
const WS_PATH = String(CONFIG.wsPath || "/ws/widget/");
const TOKEN_KEY = `pivra:${CONFIG.publicKey}:token`;
const PARENT_ORIGIN = typeof CONFIG.parentOrigin === "string" ? CONFIG.parentOrigin : "";
const EMBEDDED = window.parent !== window;
const BOT_NAME = String(CONFIG.name || "Assistant");

// Visitor-facing defaults (the product brief's exact wording); a chatbot may override them via
// config.strings. State-specific texts (waiting / busy messages) come from the state snapshot.
const T = Object.assign(
  {
    statusAi: "AI assistant",
    statusPending: "Connecting you to the team",
    statusBusy: "Team unavailable right now",
    statusClosed: "Conversation closed",
    statusActiveNoName: "Connected to the team",
    liveBadge: "● Live Agent",
    agentFromTeam: "{agent} from the team",
    teamMember: "Team member",
    you: "You",
    talkToHuman: "Talk to a human",
    offerQuestion: "Would you like to speak with a team member?",
    offerYes: "Yes, connect me",
    offerNo: "No thanks",
    waitingTitle: "Waiting for a team member…",
    waitingDefault: "Connecting you with the team now…",
    busyDefault: "Our team is currently busy. Leave your mobile number and we'll get back to you.",
    phoneLabel: "Mobile number",
    phoneSubmit: "Send",
    phoneSending: "Sending…",
    phoneRequired: "Please enter your mobile number.",
    phoneInvalid: "Please enter a valid mobile number.",
    phoneThanks: "Thanks — we'll contact you at {phone}",
    continueAi: "Continue with AI",
    continueAiTitle: "Continue chatting with AI",
    resolved: "Conversation resolved ✓",
    resolvedNote: "This conversation is closed. Start a new one to keep chatting.",
    startNew: "Start new conversation",
    closedPlaceholder: "This conversation is closed",
    placeholder: "Write a message…",
    messageLabel: "Message",
    send: "Send",
    closeChat: "Close chat",
    sending: "Sending…",
    notSent: "Not sent",
    reconnecting: "Reconnecting…",
    connecting: "Connecting…",
    typing: "{name} is typing",
    rateLimited: "You're sending messages too fast. Try again in {n} s.",
    tooLong: "Your message is too long (maximum {max} characters).",
    handoffUnavailable: "A team member isn't available right now.",
    genericError: "Something went wrong. Please try again.",
    sessionLost: "We couldn't reconnect to the chat. Please reload the page.",
    lineRequested: "You asked to talk to a team member",
    lineDeclined: "No problem, let's keep chatting",
    lineClaimed: "{agent} joined the conversation",
    lineTimedOut: "No team member was available",
    lineLead: "You shared your mobile number",
    lineResolved: "The conversation was closed",
    lineResolvedBy: "{agent} closed the conversation",
    lineContinued: "You continued with the AI in a new chat",
  },
  CONFIG.strings && typeof CONFIG.strings === "object" ? CONFIG.strings : {},
);

function readConfig() {
  try {
    const node = document.getElementById("pivra-config");
    const value = node ? JSON.parse(node.textContent || "{}") : {};
    return value && typeof value === "object" ? value : {};
  } catch (err) {
    return {};
  }
}

function fmt(template, vars) {
  return String(template).replace(/\{(\w+)\}/g, (whole, key) => (key in vars ? String(vars[key]) : whole));
}

/* ------------------------------------------------------------------ small helpers */

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = String(text);
  return node;
}

// Inline icons are built node by node: constant path data, never markup strings.
function icon(paths, size = 20) {
  const ns = "http://www.w3.org/2000/svg";
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("viewBox", "0 0 24 24");
  svg.setAttribute("width", String(size));
  svg.setAttribute("height", String(size));
  svg.setAttribute("aria-hidden", "true");
  svg.setAttribute("focusable", "false");
  for (const d of paths) {
    const path = document.createElementNS(ns, "path");
    path.setAttribute("d", d);
    svg.append(path);
  }
  return svg;
}

const ICONS = {
  chevronDown: ["M6 9l6 6 6-6"],
  send: ["M12 19V5", "M5 12l7-7 7 7"],
  person: ["M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8z", "M4 20c0-3.3 3.6-6 8-6s8 2.7 8 6"],
  refresh: ["M20 11a8 8 0 1 0-2.3 5.7", "M20 4v7h-7"],
};

function uuid() {
  try {
    if (window.crypto && typeof crypto.randomUUID === "function") return crypto.randomUUID();
  } catch (err) {
    /* randomUUID needs a secure context; fall through */
  }
  const b = crypto.getRandomValues(new Uint8Array(16));
  b[6] = (b[6] & 0x0f) | 0x40;
  b[8] = (b[8] & 0x3f) | 0x80;
  const h = Array.from(b, (x) => x.toString(16).padStart(2, "0")).join("");
  return `${h.slice(0, 8)}-${h.slice(8, 12)}-${h.slice(12, 16)}-${h.slice(16, 20)}-${h.slice(20)}`;
}

// localStorage can throw in third-party iframes with storage blocked: keep working in memory.
const memoryStore = {};
const store = {
  get(key) {
    try {
      return window.localStorage.getItem(key);
    } catch (err) {
      return memoryStore[key] ?? null;
    }
  },
  set(key, value) {
    memoryStore[key] = value;
    try {
      window.localStorage.setItem(key, value);
    } catch (err) {
      /* memory only */
    }
  },
};

function safeColor(value) {
  return typeof value === "string" && /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(value.trim()) ? value.trim() : null;
}

function hexToRgb(hex) {
  let h = hex.slice(1);
  if (h.length === 3) h = h.replace(/./g, "$&$&");
  return [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16));
}

// The accent comes from the chatbot's settings: derive readable text and hover shades from it.
function applyTheme() {
  const [r, g, b] = hexToRgb(ACCENT);
  const lin = (c) => {
    const s = c / 255;
    return s <= 0.03928 ? s / 12.92 : ((s + 0.055) / 1.055) ** 2.4;
  };
  const luminance = 0.2126 * lin(r) + 0.7152 * lin(g) + 0.0722 * lin(b);
  const root = document.documentElement.style;
  root.setProperty("--pv-accent", ACCENT);
  root.setProperty("--pv-accent-rgb", `${r}, ${g}, ${b}`);
  root.setProperty("--pv-accent-ink", luminance > 0.45 ? "#111827" : "#ffffff");
  const darker = [r, g, b].map((c) => Math.round(c * 0.85));
  root.setProperty("--pv-accent-hover", `rgb(${darker.join(", ")})`);
  // A light accent would vanish as text on white: fall back to dark ink for accent-coloured text.
  root.setProperty("--pv-accent-text", luminance > 0.45 ? "#1d2433" : ACCENT);
}

function formatTime(iso) {
  const date = iso ? new Date(iso) : new Date();
  if (Number.isNaN(date.getTime())) return "";
  try {
    return date.toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
  } catch (err) {
    return date.toLocaleString();
  }
}

const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

// Plain text with http(s) links made clickable; everything else stays a text node.
function appendRichText(parent, text) {
  const value = String(text ?? "");
  let last = 0;
  for (const match of value.matchAll(URL_RE)) {
    const url = match[0].replace(/[.,;:!?)\]}]+$/, "");
    if (match.index > last) parent.append(value.slice(last, match.index));
    const link = el("a", "", url);
    link.href = url;
    link.target = "_blank";
    link.rel = "noopener noreferrer nofollow";
    parent.append(link);
    last = match.index + url.length;
  }
  if (last < value.length) parent.append(value.slice(last));
}

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Exponential backoff from 0.5 s to 10 s with jitter, so many widgets don't reconnect in lockstep.
function backoff(attempt) {
  const base = Math.min(10000, 500 * 2 ** Math.min(attempt, 5));
  return base / 2 + Math.random() * (base / 2);
}

/* ------------------------------------------------------------------ state */

const S = {
  token: null,
  convId: null, // the conversation on screen
  state: null, // its latest snapshot
  lastSeq: 0, // highest seq rendered (sent as last_seq / Last-Event-ID)
  rendered: new Map(), // seq → row element (null for events with no visible line)
  pending: new Map(), // client_id → {frame, el?, inflight?, onAck?, onError?}
  offers: [], // {seq, buttons, answered}
  offerClosedSeq: 0, // seq of the last event that makes earlier offers moot
  typing: { ai: false, agent: false },
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
  authRenewals: 0,
  renewing: null,
  panelKey: "",
  lastView: "",
  historyGen: 0,
  noticeTimer: 0,
  stopped: false,
};

const ui = {};

/* ------------------------------------------------------------------ UI skeleton */

function buildUI() {
  const app = el("div", "pv-app");

  // Header: avatar, name, status line (with the Live Agent badge), close.
  const header = el("header", "pv-header");
  ui.avatar = buildAvatar();
  const headText = el("div", "pv-head-text");
  ui.title = el("h1", "pv-title", BOT_NAME);
  ui.status = el("p", "pv-status");
  ui.badge = el("span", "pv-badge", T.liveBadge);
  ui.badge.hidden = true;
  ui.statusText = el("span", "pv-status-text", T.statusAi);
  ui.status.append(ui.badge, ui.statusText);
  headText.append(ui.title, ui.status);
  header.append(ui.avatar, headText);
  if (EMBEDDED) {
    ui.close = el("button", "pv-icon-btn pv-close");
    ui.close.type = "button";
    ui.close.setAttribute("aria-label", T.closeChat);
    ui.close.title = T.closeChat;
    ui.close.append(icon(ICONS.chevronDown, 22));
    ui.close.addEventListener("click", requestClose);
    header.append(ui.close);
  }

  // Connection banner: always in the tree so screen readers hear it when text appears.
  ui.banner = el("div", "pv-banner");
  ui.banner.setAttribute("role", "status");

  // Scrolling area: the log (announced), then typing indicator and AI draft (not announced
  // token by token; the final message lands in the log).
  ui.scroll = el("div", "pv-scroll");
  ui.log = el("div", "pv-log");
  ui.log.setAttribute("role", "log");
  ui.log.setAttribute("aria-live", "polite");
  ui.log.setAttribute("aria-relevant", "additions");
  ui.log.setAttribute("aria-label", "Conversation");
  ui.draftSlot = el("div", "pv-draft-slot");
  ui.typing = buildTyping();
  ui.scroll.append(ui.log, ui.draftSlot, ui.typing);

  ui.panel = el("section", "pv-panel");
  ui.panel.hidden = true;

  ui.notice = el("div", "pv-notice");
  ui.notice.setAttribute("role", "alert");

  ui.actions = el("div", "pv-actions");
  ui.human = el("button", "pv-chip");
  ui.human.type = "button";
  ui.human.append(icon(ICONS.person, 16), el("span", "", T.talkToHuman));
  ui.actions.hidden = !CONFIG.handoffEnabled;
  ui.human.addEventListener("click", requestHuman);
  ui.actions.append(ui.human);

  ui.composer = buildComposer();

  app.append(header, ui.banner, ui.scroll, ui.panel, ui.notice, ui.actions, ui.composer);
  const mount = document.getElementById("pivra-app") || document.body;
  mount.replaceChildren(app);
  mount.removeAttribute("aria-busy");
}

function buildAvatar() {
  const wrap = el("div", "pv-avatar");
  wrap.setAttribute("aria-hidden", "true");
  const initial = Array.from(BOT_NAME.trim())[0] || "?";
  const letter = el("span", "pv-avatar-letter", initial.toUpperCase());
  const url = typeof CONFIG.avatarUrl === "string" ? CONFIG.avatarUrl.trim() : "";
  if (/^(https?:\/\/|\/)/i.test(url)) {
    const img = el("img", "pv-avatar-img");
    img.alt = "";
    img.src = url;
    img.addEventListener("error", () => img.replaceWith(letter));
    wrap.append(img);
  } else {
    wrap.append(letter);
  }
  return wrap;
}

function buildTyping() {
  const row = el("div", "pv-row pv-ai pv-typing");
  row.hidden = true;
  const bubble = el("div", "pv-bubble pv-typing-bubble");
  ui.typingLabel = el("span", "pv-sr");
  bubble.append(ui.typingLabel);
  for (let i = 0; i < 3; i++) bubble.append(el("span", "pv-dot"));
  row.append(bubble);
  return row;
}

function buildComposer() {
  const form = el("form", "pv-composer");
  form.noValidate = true;
  ui.input = el("textarea", "pv-input");
  ui.input.rows = 1;
  ui.input.maxLength = MAX_LEN;
  ui.input.placeholder = T.placeholder;
  ui.input.setAttribute("aria-label", T.messageLabel);
  ui.input.setAttribute("aria-describedby", "pv-counter");
  ui.input.setAttribute("enterkeyhint", "send");
  ui.send = el("button", "pv-send");
  ui.send.type = "submit";
  ui.send.setAttribute("aria-label", T.send);
  ui.send.title = T.send;
  ui.send.append(icon(ICONS.send, 18));
  ui.counter = el("div", "pv-counter");
  ui.counter.id = "pv-counter";
  ui.counter.hidden = true;
  const row = el("div", "pv-composer-row");
  row.append(ui.input, ui.send);
  form.append(row, ui.counter);

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submitComposer();
  });
  ui.input.addEventListener("keydown", (e) => {
    // Enter sends, Shift+Enter adds a line; never interrupt an IME composition.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submitComposer();
    }
  });
  ui.input.addEventListener("input", onComposerInput);
  return form;
}

function onComposerInput() {
  autoresize();
  const len = ui.input.value.length;
  const near = len >= MAX_LEN * 0.8 || MAX_LEN - len <= 100;
  ui.counter.hidden = !near;
  ui.counter.textContent = near ? `${len} / ${MAX_LEN}` : "";
  ui.counter.classList.toggle("pv-over", len >= MAX_LEN);
  ui.send.disabled = ui.input.disabled || !ui.input.value.trim();
}

function autoresize() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 132)}px`;
}

/* ------------------------------------------------------------------ scrolling */

function nearBottom() {
  const s = ui.scroll;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

// Keep the view pinned to the newest message unless the visitor scrolled up to read.
function mutate(fn, force = false) {
  const stick = force || nearBottom();
  fn();
  if (stick) ui.scroll.scrollTop = ui.scroll.scrollHeight;
}

/* ------------------------------------------------------------------ rendering events */

function renderGreeting() {
  const text = typeof CONFIG.greeting === "string" ? CONFIG.greeting.trim() : "";
  if (!text) return;
  const row = el("div", "pv-row pv-ai pv-greeting");
  row.dataset.fixed = "1";
  row.append(el("span", "pv-sr", `${BOT_NAME}:`));
  const bubble = el("div", "pv-bubble");
  appendRichText(bubble, text);
  row.append(bubble);
  ui.log.prepend(row);
}

function messageRow(author, text, createdAt, agentName) {
  const row = el("div", `pv-row pv-${author}`);
  if (author === "agent") {
    row.append(el("div", "pv-name", agentName || T.teamMember));
  } else {
    row.append(el("span", "pv-sr", `${author === "visitor" ? T.you : BOT_NAME}:`));
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
  row.append(el("span", "pv-sr", `${BOT_NAME}:`));
  const bubble = el("div", "pv-bubble");
  bubble.append(el("p", "pv-offer-q", ev.text || T.offerQuestion));
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
function renderEvent(ev) {
  switch (ev.kind || "message") {
    case "message":
      if (ev.author === "system") return ev.text ? systemLine(ev.text) : null;
      return messageRow(ev.author === "visitor" || ev.author === "agent" ? ev.author : "ai", ev.text, ev.created_at, ev.agent);
    case "handoff.offer":
      return offerRow(ev);
    case "handoff.offer_declined":
      return systemLine(T.lineDeclined);
    case "handoff.requested":
      return systemLine(T.lineRequested);
    case "handoff.claimed":
      return systemLine(fmt(T.lineClaimed, { agent: ev.agent || T.teamMember }));
    case "handoff.timed_out":
      return systemLine(T.lineTimedOut);
    case "lead.captured":
      return systemLine(T.lineLead);
    case "handoff.resolved":
      return systemLine(ev.agent ? fmt(T.lineResolvedBy, { agent: ev.agent }) : T.lineResolved);
    case "conversation.continued":
      return systemLine(T.lineContinued);
    default:
      return ev.text ? systemLine(ev.text) : null;
  }
}

// Rows are ordered by seq; local "sending" rows (no seq yet) stay after every stored event.
function insertBySeq(row, seq) {
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

function sameConversation(frame) {
  return !frame.conversation || !S.convId || frame.conversation === S.convId;
}

function onEvent(ev, live) {
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
    S.lastSeq = Math.max(S.lastSeq, ev.seq);
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

/* ------------------------------------------------------------------ typing & drafts */

function renderTyping() {
  const showAi = S.typing.ai && !S.draft && viewState() === "ai";
  const showAgent = S.typing.agent;
  const on = showAi || showAgent;
  const name = showAgent ? (S.state && S.state.handoff && S.state.handoff.agent) || T.teamMember : BOT_NAME;
  mutate(() => {
    ui.typing.hidden = !on;
    ui.typing.classList.toggle("pv-agent-typing", showAgent && !showAi);
    ui.typingLabel.textContent = on ? fmt(T.typing, { name }) : "";
  });
  // A lost "typing off" must never leave the dots running forever.
  clearTimeout(S.typingTimer);
  if (on) S.typingTimer = setTimeout(clearTyping, 60000);
}

function clearTyping() {
  S.typing.ai = false;
  S.typing.agent = false;
  clearTimeout(S.typingTimer);
  ui.typing.hidden = true;
  ui.typingLabel.textContent = "";
}

function onTyping(frame) {
  if (!sameConversation(frame)) return;
  const who = frame.author === "agent" ? "agent" : "ai";
  if (who === "ai" && viewState() !== "ai") return; // the AI is silent during a handoff
  S.typing[who] = Boolean(frame.on);
  renderTyping();
}

function onDelta(frame) {
  if (!sameConversation(frame) || viewState() !== "ai" || typeof frame.text !== "string") return;
  mutate(() => {
    if (!S.draft || S.draft.replyTo !== frame.reply_to) {
      dropDraft();
      const row = el("div", "pv-row pv-ai pv-draft");
      row.setAttribute("aria-hidden", "true"); // the final event is what gets announced
      const bubble = el("div", "pv-bubble");
      const text = document.createTextNode("");
      bubble.append(text, el("span", "pv-caret"));
      row.append(bubble);
      ui.draftSlot.append(row);
      S.draft = { replyTo: frame.reply_to, row, text, timer: 0 };
    }
    S.draft.text.appendData(frame.text);
  });
  clearTimeout(S.draft.timer);
  S.draft.timer = setTimeout(dropDraft, 60000);
  renderTyping();
}

function dropDraft() {
  if (!S.draft) return;
  clearTimeout(S.draft.timer);
  S.draft.row.remove();
  S.draft = null;
}

/* ------------------------------------------------------------------ conversation state */

// pending | active | busy → the handoff's own status; closed → resolved; otherwise the AI chat.
function viewState() {
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

function applyState(state, force = false) {
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
  S.state = state;
  renderView();
}

// Show another conversation: a `switch` frame, a welcome for a different one, or a late claim.
function switchTo(state) {
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

function renderView() {
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
  ui.actions.hidden = !(CONFIG.handoffEnabled && vs === "ai");
  if (vs !== S.lastView) {
    ui.human.disabled = false;
    S.lastView = vs;
  }
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
    active: agent ? fmt(T.agentFromTeam, { agent }) : T.statusActiveNoName,
  };
  ui.statusText.textContent = texts[vs];
}

function renderComposer(vs) {
  const closed = vs === "resolved";
  // In "team busy" nobody reads the chat: the panel's two choices replace the composer.
  ui.composer.hidden = vs === "busy";
  ui.input.disabled = closed;
  ui.input.placeholder = closed ? T.closedPlaceholder : T.placeholder;
  if (closed) ui.input.setAttribute("aria-describedby", "pv-counter pv-resolved-note");
  else ui.input.setAttribute("aria-describedby", "pv-counter");
  onComposerInput();
}

function renderOffers() {
  const canAnswer = viewState() === "ai";
  for (const offer of S.offers) {
    const moot = offer.answered || !canAnswer || offer.seq <= S.offerClosedSeq;
    for (const btn of offer.buttons) btn.disabled = moot;
  }
}

/* ------------------------------------------------------------------ state panel */

function renderPanel(vs) {
  const h = (S.state && S.state.handoff) || {};
  const key = JSON.stringify([vs, h.waiting_message, h.busy_message, h.lead_phone]);
  if (key === S.panelKey) return;
  S.panelKey = key;
  const focusWasInside = ui.panel.contains(document.activeElement);
  const typedPhone = ui.phoneInput ? ui.phoneInput.value : "";
  ui.phoneInput = ui.phoneError = ui.phoneSubmit = null;

  let card = null;
  if (vs === "pending") card = pendingCard(h);
  else if (vs === "busy") card = busyCard(h, typedPhone);
  else if (vs === "resolved") card = resolvedCard();
  mutate(() => {
    ui.panel.replaceChildren(...(card ? [card] : []));
    ui.panel.hidden = !card;
    ui.panel.dataset.state = card ? vs : "";
  });
  if (focusWasInside) {
    const target = ui.panel.querySelector("input, button:not([disabled])");
    if (target) target.focus();
    else focusComposer();
  }
}

function pendingCard(h) {
  const card = el("div", "pv-card pv-card-pending");
  card.setAttribute("role", "status");
  const spinner = el("span", "pv-spinner");
  spinner.setAttribute("aria-hidden", "true");
  const body = el("div", "pv-card-body");
  body.append(el("p", "pv-card-title", T.waitingTitle), el("p", "pv-card-text", h.waiting_message || T.waitingDefault));
  card.append(spinner, body);
  return card;
}

function busyCard(h, typedPhone) {
  const card = el("div", "pv-card pv-card-busy");
  card.append(el("p", "pv-card-text pv-busy-message", h.busy_message || T.busyDefault));

  if (h.lead_phone) {
    const thanks = el("p", "pv-thanks", fmt(T.phoneThanks, { phone: h.lead_phone }));
    thanks.setAttribute("role", "status");
    card.append(thanks);
  } else {
    card.append(phoneForm(typedPhone));
  }

  const cont = el("button", "pv-btn pv-btn-secondary pv-btn-block", T.continueAi);
  cont.type = "button";
  cont.title = T.continueAiTitle;
  cont.addEventListener("click", () => {
    cont.disabled = true;
    sendAction({ type: "continue_with_ai" }, { onError: () => (cont.disabled = false) });
  });
  card.append(cont);
  return card;
}

function phoneForm(typedPhone) {
  const form = el("form", "pv-phone");
  form.noValidate = true;
  const label = el("label", "pv-label", T.phoneLabel);
  label.htmlFor = "pv-phone";
  const input = el("input", "pv-field");
  input.id = "pv-phone";
  input.type = "tel";
  input.name = "phone";
  input.autocomplete = "tel";
  input.inputMode = "tel";
  input.maxLength = 40;
  input.value = typedPhone;
  input.setAttribute("aria-describedby", "pv-phone-error");
  const submit = el("button", "pv-btn pv-btn-primary", T.phoneSubmit);
  submit.type = "submit";
  const error = el("p", "pv-field-error");
  error.id = "pv-phone-error";
  error.setAttribute("role", "alert");
  const row = el("div", "pv-phone-row");
  row.append(input, submit);
  form.append(label, row, error);
  ui.phoneInput = input;
  ui.phoneError = error;
  ui.phoneSubmit = submit;

  input.addEventListener("input", () => showPhoneError(""));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const phone = input.value.trim();
    if (!phone) {
      showPhoneError(T.phoneRequired);
      input.focus();
      return;
    }
    setPhoneBusy(true);
    sendAction(
      { type: "lead", phone, locale: navigator.language || "" },
      {
        onAck: () => setPhoneBusy(false),
        onError: (f) => {
          setPhoneBusy(false);
          if (f.code === "invalid_phone") {
            showPhoneError(typeof f.detail === "string" && f.detail ? f.detail : T.phoneInvalid);
            if (ui.phoneInput) ui.phoneInput.focus();
            return true; // shown inline, no global notice
          }
          return false;
        },
      },
    );
  });
  return form;
}

function showPhoneError(text) {
  if (!ui.phoneError) return;
  ui.phoneError.textContent = text;
  if (text) ui.phoneInput.setAttribute("aria-invalid", "true");
  else ui.phoneInput.removeAttribute("aria-invalid");
}

function setPhoneBusy(busy) {
  if (!ui.phoneSubmit) return;
  ui.phoneSubmit.disabled = busy;
  ui.phoneSubmit.textContent = busy ? T.phoneSending : T.phoneSubmit;
}

function resolvedCard() {
  const card = el("div", "pv-card pv-card-resolved");
  card.append(el("p", "pv-card-title pv-ok", T.resolved));
  const note = el("p", "pv-card-text", T.resolvedNote);
  note.id = "pv-resolved-note";
  const start = el("button", "pv-btn pv-btn-primary pv-btn-block", T.startNew);
  start.type = "button";
  start.addEventListener("click", () => {
    start.disabled = true;
    sendAction({ type: "new_conversation" }, { onError: () => (start.disabled = false) });
  });
  card.append(note, start);
  return card;
}

/* ------------------------------------------------------------------ visitor actions */

function submitComposer() {
  if (ui.input.disabled) return;
  const text = ui.input.value.trim();
  if (!text) return;
  if (text.length > MAX_LEN) {
    showNotice(fmt(T.tooLong, { max: MAX_LEN }));
    return;
  }
  ui.input.value = "";
  onComposerInput();

  const clientId = uuid();
  const row = messageRow("visitor", text, null);
  row.classList.add("pv-sending");
  row.dataset.pending = "1";
  row.dataset.clientId = clientId;
  const meta = el("div", "pv-meta", T.sending);
  row.append(meta);
  mutate(() => ui.log.append(row), true);

  sendAction(
    { type: "message", client_id: clientId, text },
    {
      el: row,
      onAck: (f) => {
        row.classList.remove("pv-sending");
        delete row.dataset.pending;
        meta.remove();
        if (typeof f.seq === "number" && !S.rendered.has(f.seq)) {
          row.dataset.seq = String(f.seq);
          S.rendered.set(f.seq, row);
          S.lastSeq = Math.max(S.lastSeq, f.seq);
          insertBySeq(row, f.seq);
        } else if (typeof f.seq === "number") {
          row.remove(); // the stored event is already on screen
        }
      },
      onError: (f) => {
        if (f.code === "rate_limited" || f.code === "message_too_long") {
          // Nothing was stored: give the text back so the visitor can send it again.
          row.remove();
          restoreText(text);
        } else {
          row.classList.remove("pv-sending");
          row.classList.add("pv-failed");
          meta.textContent = T.notSent;
        }
        return false;
      },
    },
  );
}

function restoreText(text) {
  const current = ui.input.value;
  ui.input.value = current ? `${text}\n${current}` : text;
  onComposerInput();
}

function requestHuman() {
  ui.human.disabled = true;
  sendAction({ type: "handoff.request" }, { onError: () => (ui.human.disabled = false) });
  // If the state never moves (lost frame), let the visitor try again.
  setTimeout(() => {
    if (viewState() === "ai") ui.human.disabled = false;
  }, 10000);
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

function focusComposer() {
  if (!ui.composer.hidden && !ui.input.disabled) ui.input.focus();
}

/* ------------------------------------------------------------------ notices */

function showNotice(text, ms = 6000) {
  clearInterval(S.noticeTimer);
  ui.notice.textContent = text;
  S.noticeTimer = setTimeout(() => (ui.notice.textContent = ""), ms);
}

function showRateLimit(seconds) {
  // Count down so the visitor knows exactly when sending works again.
  let left = Math.max(1, Math.ceil(seconds));
  clearInterval(S.noticeTimer);
  ui.notice.textContent = fmt(T.rateLimited, { n: left });
  S.noticeTimer = setInterval(() => {
    left -= 1;
    if (left <= 0) {
      clearInterval(S.noticeTimer);
      ui.notice.textContent = "";
    } else {
      ui.notice.textContent = fmt(T.rateLimited, { n: left });
    }
  }, 1000);
}

function setConnected(connected) {
  // A connection that lived a while earns a fresh backoff; one the server drops at once does not,
  // so a server that accepts and immediately closes is not hammered.
  if (connected && !S.connected) S.connectedAt = Date.now();
  if (!connected && S.connected && Date.now() - S.connectedAt > 5000) S.attempt = 0;
  S.connected = connected;
  document.body.dataset.connected = connected ? "true" : "false";
  clearTimeout(S.bannerTimer);
  if (connected) {
    S.everConnected = true;
    ui.banner.textContent = "";
    return;
  }
  // Short blips (a reconnect within a second) don't deserve a banner.
  S.bannerTimer = setTimeout(() => {
    if (!S.connected) ui.banner.textContent = S.everConnected ? T.reconnecting : T.connecting;
  }, 1200);
}

/* ------------------------------------------------------------------ frames (both transports) */

function handleFrame(f) {
  if (!f || typeof f !== "object") return;
  S.lastFrameAt = Date.now();
  switch (f.type) {
    case "welcome":
      onWelcome(f);
      break;
    case "state":
      applyState(f.state);
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
  setConnected(true);
  const state = f.state;
  if (state && state.conversation && state.conversation !== S.convId) switchTo(state);
  else applyState(state, true);
  if (S.pageUrl) sendFrame({ type: "page", url: S.pageUrl });
  flushPending();
}

function onAck(f) {
  const entry = S.pending.get(f.client_id);
  if (!entry) return;
  S.pending.delete(f.client_id);
  if (entry.onAck) entry.onAck(f);
}

function onError(f) {
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
      showNotice(fmt(T.tooLong, { max: MAX_LEN }));
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

/* ------------------------------------------------------------------ sending */

function sendAction(frame, callbacks = {}) {
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

function flushPending() {
  for (const entry of S.pending.values()) transmit(entry);
}

function sendFrame(frame) {
  if (S.transport !== "ws" || !S.ws || S.ws.readyState !== WebSocket.OPEN) return false;
  try {
    S.ws.send(JSON.stringify(frame));
    return true;
  } catch (err) {
    return false;
  }
}

// HTTP equivalents of the socket frames, used in SSE mode.
const HTTP_ROUTES = {
  message: "/messages",
  "handoff.request": "/handoff",
  "handoff.offer_reply": "/handoff/offer",
  lead: "/lead",
  continue_with_ai: "/continue",
  new_conversation: "/new",
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
    if (!err.status) {
      setTimeout(flushPending, 3000); // network trouble: keep it pending and try again
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
  if (!S.pending.has(body.client_id)) return;
  if (type === "continue_with_ai" || type === "new_conversation") {
    S.pending.delete(body.client_id);
    handleFrame({ type: "switch", state: res && res.state });
    return;
  }
  handleFrame({ type: "ack", client_id: body.client_id, seq: res && res.seq });
  if (res && res.state) handleFrame({ type: "state", state: res.state });
}

async function api(method, path, body) {
  const headers = { Accept: "application/json" };
  if (S.token) headers.Authorization = `Bearer ${S.token}`;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  // Token auth only: no cookies, so a Pivra login in the same browser can't change who we are.
  const res = await fetch(API + path, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
    credentials: "omit",
    cache: "no-store",
  });
  let data = null;
  try {
    data = await res.json();
  } catch (err) {
    data = null;
  }
  if (!res.ok) {
    const err = new Error(`HTTP ${res.status}`);
    err.status = res.status;
    err.code = (data && data.code) || (res.status === 401 ? "not_authenticated" : res.status === 429 ? "rate_limited" : "http_error");
    err.detail = data && typeof data.detail === "string" ? data.detail : "";
    err.retryAfter = Number(res.headers.get("Retry-After")) || (data && data.retry_after) || 0;
    throw err;
  }
  return data;
}

/* ------------------------------------------------------------------ session & history */

async function createSession() {
  const data = await api("POST", "/session", {
    public_key: CONFIG.publicKey,
    token: store.get(TOKEN_KEY),
    locale: navigator.language || "",
    page: S.pageUrl,
  });
  if (!data || !data.token) throw new Error("no token");
  S.token = data.token;
  store.set(TOKEN_KEY, data.token);
  return data;
}

function renewSession() {
  if (!S.renewing) {
    S.authRenewals += 1;
    S.renewing = createSession()
      .then((data) => {
        if (data.state && data.state.conversation !== S.convId) switchTo(data.state);
        return data;
      })
      .finally(() => (S.renewing = null));
  }
  return S.renewing;
}

async function renewSessionAndReconnect() {
  if (S.authRenewals >= 3) {
    S.stopped = true;
    showNotice(T.sessionLost, 600000);
    return;
  }
  try {
    await renewSession();
  } catch (err) {
    /* the reconnect loop retries */
  }
  if (S.transport === "ws" && S.ws) dropSocket(S.ws, true);
  else if (S.sseAbort) S.sseAbort.abort();
}

async function loadHistory(convId) {
  const gen = ++S.historyGen;
  let data;
  try {
    data = await api("GET", `/events?conversation=${encodeURIComponent(convId)}&after_seq=0`);
  } catch (err) {
    return; // the socket's replay (hello with last_seq) fills the gap
  }
  if (gen !== S.historyGen || convId !== S.convId || !data) return;
  mutate(() => {
    for (const ev of Array.isArray(data.events) ? data.events : []) onEvent(ev, false);
  }, true);
  if (data.state) applyState(data.state);
}

/* ------------------------------------------------------------------ WebSocket transport */

function wsUrl() {
  const proto = location.protocol === "https:" ? "wss:" : "ws:";
  return `${proto}//${location.host}${WS_PATH}`;
}

function connect() {
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
function dropSocket(ws, close) {
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
  S.reconnectTimer = setTimeout(connect, delay);
}

// Ping every 25 s; a socket silent for 65 s is dead even if the browser hasn't noticed.
function startHeartbeat() {
  clearInterval(S.heartbeat);
  S.heartbeat = setInterval(() => {
    if (S.transport !== "ws" || !S.ws) return;
    if (S.connected && Date.now() - S.lastFrameAt > 65000) dropSocket(S.ws, true);
    else if (S.connected) sendFrame({ type: "ping" });
  }, 25000);
}

// Come back quickly after sleep / network changes instead of waiting out the backoff.
function reconnectNow() {
  if (S.stopped || S.connected) return;
  S.attempt = 0;
  if (S.transport === "ws" && !S.ws) {
    clearTimeout(S.reconnectTimer);
    connect();
  } else if (S.transport === "sse" && S.sseWake) {
    S.sseWake();
  }
}

/* ------------------------------------------------------------------ SSE transport */

function startSse() {
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
      if (!res.ok || !res.body) throw new Error(`stream HTTP ${res.status}`);
      S.authRenewals = 0;
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
        setTimeout(resolve, backoff(S.attempt++));
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
      // "id" is the event's seq, which handleFrame already tracks as S.lastSeq; "retry" is ignored.
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

/* ------------------------------------------------------------------ parent page (loader) */

function toParent(event, payload = {}) {
  if (!EMBEDDED || !PARENT_ORIGIN || PARENT_ORIGIN === "null") return;
  try {
    window.parent.postMessage({ event, payload }, PARENT_ORIGIN);
  } catch (err) {
    /* invalid origin string: nothing to tell */
  }
}

function requestClose() {
  toParent("pivra:close");
}

function setOpen(open) {
  S.open = open;
  document.body.dataset.open = open ? "true" : "false";
  if (!open) return;
  if (S.unread) {
    S.unread = 0;
    toParent("pivra:unread", { count: 0 });
  }
  ui.scroll.scrollTop = ui.scroll.scrollHeight;
  // Focusing opens the on-screen keyboard on phones: only do it with a real pointer.
  if (window.matchMedia && window.matchMedia("(pointer: fine)").matches) focusComposer();
}

function onParentMessage(e) {
  if (!PARENT_ORIGIN || e.origin !== PARENT_ORIGIN || e.source !== window.parent) return;
  const msg = e.data;
  if (!msg || typeof msg !== "object" || typeof msg.event !== "string") return;
  const payload = msg.payload && typeof msg.payload === "object" ? msg.payload : {};
  if (msg.event === "pivra:open") setOpen(true);
  else if (msg.event === "pivra:close") setOpen(false);
  else if (msg.event === "pivra:page" && typeof payload.url === "string" && payload.url.length <= 2000) {
    if (payload.url === S.pageUrl) return;
    S.pageUrl = payload.url;
    if (S.connected) sendFrame({ type: "page", url: payload.url }); // no HTTP twin: SSE mode skips it
  }
}

/* ------------------------------------------------------------------ start */

async function start() {
  applyTheme();
  buildUI();
  renderGreeting();
  renderView();
  document.body.dataset.open = S.open ? "true" : "false";
  window.addEventListener("message", onParentMessage);
  document.addEventListener("keydown", (e) => {
    if (e.key === "Escape" && EMBEDDED) requestClose();
  });
  window.addEventListener("online", reconnectNow);
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") reconnectNow();
  });
  setConnected(false);

  // The session call retries forever with backoff: a visitor may open the page offline.
  let session = null;
  let readySent = false;
  for (let attempt = 0; !session; attempt++) {
    try {
      session = await createSession();
    } catch (err) {
      if (!readySent) {
        readySent = true;
        toParent("pivra:ready", { accentColor: ACCENT });
      }
      await sleep(backoff(attempt));
    }
  }
  const state = session.state;
  if (state && state.conversation) {
    S.convId = state.conversation;
    applyState(state, true);
    await loadHistory(state.conversation);
  } else if (state) {
    applyState(state, true);
  }
  ui.scroll.scrollTop = ui.scroll.scrollHeight;
  startHeartbeat();
  connect();
  if (!readySent) toParent("pivra:ready", { accentColor: ACCENT });
}

start();
