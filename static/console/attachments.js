// Attachments in a conversation: the composer's paperclip (upload with progress; a refusal shown as
// the server words it) and a message's file in the thread — an image as a thumbnail linking to the
// full size, a PDF as a download link with its name and size. Links are signed and expire; the
// session cookie is the other half of the check, so plain <img> and <a> work here. An expired link
// is renewed as the widget renews its own: the event is read again through the console API, whose
// frames carry fresh links (on an image's load error, and before a stale link is followed).

import { consoleSocket, csrfToken } from "./console.js";
import { formatNumber, gettext, interpolate } from "./i18n.js";

const page = document.querySelector("[data-conversation-page]");
const conversationId = page ? page.dataset.conversation : "";
const limits = (page && page.querySelector("[data-attach]")) || null;
// The server's limits (templates/attachments/composer_button.html), with its defaults as fallback.
const MAX_BYTES = Number(limits && limits.dataset.maxBytes) || 10 * 1024 * 1024;
const LINK_SECONDS = Number(limits && limits.dataset.linkSeconds) || 3600;
const pageLoadedAt = Date.now(); // when the server-rendered thread's links were signed

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // text only: a name never becomes markup
  return node;
}

/** "512 B", "14 KB", "2.5 MB" in the agent's language (decimal sign and unit). */
export function sizeText(bytes) {
  const n = Number(bytes) || 0;
  const number = (value, digits = 0) =>
    formatNumber(value, { useGrouping: false, minimumFractionDigits: digits, maximumFractionDigits: digits });
  if (n < 1024) return interpolate(gettext("%(size)s B"), { size: number(n) }, true);
  if (n < 1024 * 1024) return interpolate(gettext("%(size)s KB"), { size: number(Math.round(n / 1024)) }, true);
  return interpolate(gettext("%(size)s MB"), { size: number(n / (1024 * 1024), 1) }, true);
}

/** The bubble of a message carrying a file, or null for any other event. */
export function attachmentBubble(frame) {
  const att = frame && frame.data && frame.data.attachment;
  if (!att || typeof att.url !== "string" || !att.url.startsWith("/api/attachments/")) return null;
  const bubble = el("div", "ev-bubble");
  bubble.dataset.linksAt = String(Date.now());
  const name = String(att.name || gettext("attachment"));
  if (typeof att.thumb_url === "string" && att.thumb_url.startsWith("/api/attachments/")) {
    const link = el("a", "att-thumb");
    link.href = att.url;
    link.target = "_blank";
    link.rel = "noopener";
    link.title = interpolate(gettext("Open %(name)s full size"), { name }, true);
    const img = el("img");
    const w = Number(att.width) || 320;
    const h = Number(att.height) || 240;
    const scale = Math.min(1, 240 / w, 240 / h);
    img.width = Math.max(1, Math.round(w * scale));
    img.height = Math.max(1, Math.round(h * scale));
    img.alt = name;
    img.src = att.thumb_url;
    link.append(img);
    bubble.append(link, el("span", "att-caption", `${name} · ${sizeText(att.size)}`)); // a name and a size: no words
  } else {
    const link = el("a", "att-file");
    link.href = att.url;
    link.download = name;
    const icon = el("span", "att-icon", "PDF"); // a file type, aria-hidden
    icon.setAttribute("aria-hidden", "true");
    link.append(icon, el("span", "att-name", name), el("span", "att-size", sizeText(att.size)));
    bubble.append(link);
  }
  return bubble;
}

// --- renewing expired links ----------------------------------------------------------------------

const renewals = new WeakMap(); // message row → its pending renewal

function linksAge(row) {
  const bubble = row.querySelector(".ev-bubble");
  return Date.now() - (Number(bubble && bubble.dataset.linksAt) || pageLoadedAt);
}

function isStale(row) {
  return linksAge(row) > Math.max(30, LINK_SECONDS - 60) * 1000;
}

/** Fresh links for the message in ``row`` (read again through the console API), set in place. */
function renew(row) {
  if (renewals.has(row)) return renewals.get(row);
  const pending = (async () => {
    const seq = Number(row.dataset.seq);
    const anyLink = row.querySelector('a[href^="/api/attachments/"]');
    const match = anyLink && /^\/api\/attachments\/([0-9a-f-]+)\//.exec(anyLink.getAttribute("href"));
    if (!match || !Number.isInteger(seq)) return false;
    const url = `/api/console/conversations/${conversationId}/events?after_seq=${Math.max(0, seq - 1)}`;
    const response = await fetch(url, { credentials: "same-origin", cache: "no-store" });
    if (!response.ok || response.redirected) return false;
    const data = await response.json();
    const frame = ((data && data.events) || []).find((ev) => ev.data && ev.data.attachment && ev.data.attachment.id === match[1]);
    const att = frame && frame.data.attachment;
    if (!att || typeof att.url !== "string" || !att.url.startsWith("/api/attachments/")) return false;
    for (const link of row.querySelectorAll("a.att-thumb, a.att-file")) link.href = att.url;
    const img = row.querySelector(".att-thumb img");
    if (img && typeof att.thumb_url === "string" && att.thumb_url.startsWith("/api/attachments/")) img.src = att.thumb_url;
    const bubble = row.querySelector(".ev-bubble");
    if (bubble) bubble.dataset.linksAt = String(Date.now());
    return true;
  })()
    .catch(() => false)
    .finally(() => renewals.delete(row));
  renewals.set(row, pending);
  return pending;
}

const threadList = page && page.querySelector("[data-thread]");
if (threadList) {
  // An image that fails to load (its link expired, HTTP 403 link_expired): renewed once.
  threadList.addEventListener(
    "error",
    (e) => {
      const img = e.target;
      if (!(img instanceof HTMLImageElement) || !img.closest(".att-thumb") || img.dataset.renewed) return;
      const row = img.closest("[data-seq]");
      if (!row) return;
      img.dataset.renewed = "1";
      renew(row);
    },
    true,
  );
  // A stale link is renewed as the pointer comes near it, and at the latest when it is followed.
  threadList.addEventListener("pointerover", (e) => {
    const link = e.target instanceof Element && e.target.closest("a.att-thumb, a.att-file");
    const row = link && link.closest("[data-seq]");
    if (row && isStale(row)) renew(row);
  });
  threadList.addEventListener("click", (e) => {
    const link = e.target instanceof Element && e.target.closest("a.att-thumb, a.att-file");
    const row = link && link.closest("[data-seq]");
    if (!row || !isStale(row) || e.defaultPrevented || e.button !== 0) return;
    e.preventDefault();
    // Opened now, while the click still counts as the user's, and pointed at the fresh link after.
    const tab = link.target === "_blank" ? window.open("", "_blank") : null;
    renew(row).then((renewed) => {
      if (tab) {
        tab.opener = null;
        tab.location.href = link.href;
      } else if (renewed) {
        link.click(); // fresh now: followed by the browser (a download keeps its file name)
      }
    });
  });
}

// --- the paperclip ------------------------------------------------------------------------------

const button = page && page.querySelector("[data-attach]");
const input = page && page.querySelector("[data-attach-input]");
const status = page && page.querySelector("[data-attach-status]");
const textarea = page && page.querySelector("[data-composer] textarea");
const errorBox = page && page.querySelector("[data-error]");
let uploading = false;

function showStatus(text, isError) {
  status.textContent = text;
  status.hidden = !text;
  status.classList.toggle("is-error", Boolean(isError));
  if (isError && errorBox) {
    errorBox.textContent = text;
    errorBox.hidden = false;
  }
}

function syncEnabled() {
  button.disabled = uploading || !textarea || textarea.disabled;
}

function newClientId() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  return `${Date.now().toString(36)}-${Math.random().toString(36).slice(2)}`;
}

function uploadingText(name, percent) {
  // Translators: %(percent)s is already a percentage, e.g. "42%".
  return interpolate(gettext("Uploading %(name)s… %(percent)s"), { name, percent: formatNumber(percent / 100, { style: "percent" }) }, true);
}

function upload(file) {
  if (file.size > MAX_BYTES) {
    const limit = formatNumber(Math.round(MAX_BYTES / (1024 * 1024)), { useGrouping: false });
    showStatus(interpolate(gettext("%(name)s is too large: files can be at most %(limit)s MB."), { name: file.name, limit }, true), true);
    return;
  }
  uploading = true;
  syncEnabled();
  showStatus(uploadingText(file.name, 0));
  const body = new FormData();
  body.append("client_id", newClientId());
  body.append("file", file, file.name);
  const xhr = new XMLHttpRequest(); // fetch() cannot report upload progress
  xhr.open("POST", `/api/console/conversations/${conversationId}/attachments`);
  xhr.setRequestHeader("X-CSRFToken", csrfToken());
  xhr.setRequestHeader("Accept", "application/json");
  xhr.upload.addEventListener("progress", (e) => {
    if (e.lengthComputable) showStatus(uploadingText(file.name, Math.min(99, Math.round((e.loaded / e.total) * 100))));
  });
  xhr.addEventListener("load", () => {
    let data = null;
    try {
      data = JSON.parse(xhr.responseText);
    } catch {
      data = null;
    }
    done();
    if (xhr.status >= 200 && xhr.status < 300 && data && data.event) {
      showStatus("");
      if (errorBox) errorBox.hidden = true;
      // Shown at once, through the thread's own path (deduplicated by seq against the socket's copy).
      consoleSocket.dispatchEvent(new CustomEvent("event", { detail: data.event }));
      return;
    }
    const detail =
      data && typeof data.detail === "string"
        ? data.detail
        : interpolate(gettext("The file could not be sent (HTTP %(status)s)."), { status: xhr.status }, true);
    showStatus(interpolate(gettext("%(name)s was not sent: %(reason)s"), { name: file.name, reason: detail }, true), true);
  });
  xhr.addEventListener("error", () => {
    done();
    const message = gettext("%(name)s was not sent: can't reach Pivra. Check your connection and try again.");
    showStatus(interpolate(message, { name: file.name }, true), true);
  });
  xhr.send(body);
}

function done() {
  uploading = false;
  syncEnabled();
}

if (button && input && status) {
  button.addEventListener("click", () => {
    // A file always goes to the visitor: never from the composer's internal Note mode (notes.js).
    if (!button.disabled && !button.closest(".is-note")) input.click();
  });
  input.addEventListener("change", () => {
    const file = input.files && input.files[0];
    input.value = "";
    if (file) upload(file);
  });
  if (textarea) new MutationObserver(syncEnabled).observe(textarea, { attributes: true, attributeFilter: ["disabled"] });
  syncEnabled();
}
