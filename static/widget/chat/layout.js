/*
 * The frame's skeleton and the surfaces around the conversation: the accent theme, header,
 * connection banner, notices, and scroll pinning (mutate). Built once at start; later renders only
 * change text, hidden flags and classes on these nodes, so screen readers keep their place.
 */

import { requestClose } from "./bridge.js";
import { buildComposer, requestHuman } from "./composer.js";
import { ACCENT, BOT_NAME, CONFIG, EMBEDDED, T, t } from "./config.js";
import { S, ui } from "./state.js";
import { buildTyping } from "./typing.js";
import { ICONS, el, icon } from "./util.js";

/* ------------------------------------------------------------------ theme */

function hexToRgb(hex) {
  let h = hex.slice(1);
  if (h.length === 3) h = h.replace(/./g, "$&$&");
  return [0, 2, 4].map((i) => parseInt(h.slice(i, i + 2), 16));
}

// The accent comes from the chatbot's settings: derive readable text and hover shades from it.
export function applyTheme() {
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

/* ------------------------------------------------------------------ UI skeleton */

export function buildUI() {
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
  ui.log.setAttribute("aria-label", T.conversationLabel);
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
  ui.actions.hidden = !CONFIG.handoffEnabled || Boolean(CONFIG.handoffHidden);
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

/* ------------------------------------------------------------------ scrolling */

function nearBottom() {
  const s = ui.scroll;
  return s.scrollHeight - s.scrollTop - s.clientHeight < 80;
}

// Keep the view pinned to the newest message unless the visitor scrolled up to read.
export function mutate(fn, force = false) {
  const stick = force || nearBottom();
  fn();
  if (stick) ui.scroll.scrollTop = ui.scroll.scrollHeight;
}

/* ------------------------------------------------------------------ notices */

export function showNotice(text, ms = 6000) {
  clearInterval(S.noticeTimer);
  ui.notice.textContent = text;
  S.noticeTimer = setTimeout(() => (ui.notice.textContent = ""), ms);
}

export function showRateLimit(seconds) {
  // Count down so the visitor knows exactly when sending works again.
  let left = Math.max(1, Math.ceil(seconds));
  clearInterval(S.noticeTimer);
  ui.notice.textContent = t("rateLimited", { n: left });
  S.noticeTimer = setInterval(() => {
    left -= 1;
    if (left <= 0) {
      clearInterval(S.noticeTimer);
      ui.notice.textContent = "";
    } else {
      ui.notice.textContent = t("rateLimited", { n: left });
    }
  }, 1000);
}

export function setConnected(connected) {
  // A connection that lived a while earns a fresh backoff; one the server drops at once does not,
  // so a server that accepts and immediately closes is not hammered.
  if (connected && !S.connected) S.connectedAt = Date.now();
  if (!connected && S.connected && Date.now() - S.connectedAt > 5000) S.attempt = 0;
  S.connected = connected;
  document.body.dataset.connected = connected ? "true" : "false";
  clearTimeout(S.bannerTimer);
  S.blipOver = false;
  if (connected) {
    S.everConnected = true;
    renderBanner();
    return;
  }
  renderBanner();
  // Short blips (a reconnect within a second) don't deserve a banner.
  S.bannerTimer = setTimeout(() => {
    S.blipOver = true;
    renderBanner();
  }, 1200);
}

// The server said it is briefly unavailable (503, or an "unavailable" frame), or an action could not
// reach it: "Reconnecting…" at once, whatever the stream's state, until an action or hello works.
// Nothing is dropped meanwhile: the actions wait in S.pending and the typed text in the composer.
export function setDegraded(degraded) {
  if (S.degraded === degraded) return;
  S.degraded = degraded;
  document.body.dataset.degraded = degraded ? "true" : "false";
  renderBanner();
}

function renderBanner() {
  let text = "";
  if (!S.connected && (S.blipOver || S.degraded)) text = S.everConnected ? T.reconnecting : T.connecting;
  else if (S.degraded) text = T.reconnecting;
  if (ui.banner.textContent !== text) ui.banner.textContent = text;
}
