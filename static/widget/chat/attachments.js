/*
 * Attachments in the widget: the composer's paperclip (an upload with its progress, refusals shown as
 * the server words them) and a message's file — an image as a thumbnail that opens full size in an
 * overlay, a PDF as a download link with its name and size.
 *
 * Files are fetched with the visitor's token (the signed link alone is not enough, README
 * "Attachments") and shown from blob: URLs: an <img src> could not send the Authorization header.
 */

import { API, CONFIG, FORMAT_LOCALE, T, t } from "./config.js";
import { onEvent } from "./conversation.js";
import { mutate, showNotice } from "./layout.js";
import { S, ui } from "./state.js";
import { el, icon, uuid } from "./util.js";

const ACCEPT = "image/png,image/jpeg,image/gif,image/webp,application/pdf";
const MAX_BYTES = Number(CONFIG.attachmentMaxBytes) > 0 ? Number(CONFIG.attachmentMaxBytes) : 10 * 1024 * 1024;
const CLIP = ["M21 11.5l-8.6 8.6a5 5 0 0 1-7.1-7.1l8.6-8.6a3.3 3.3 0 0 1 4.7 4.7l-8.6 8.6a1.7 1.7 0 0 1-2.4-2.4l7.9-7.9"];
// --- the paperclip ------------------------------------------------------------------------------

export function attachButton() {
  const input = el("input");
  input.type = "file";
  input.accept = ACCEPT;
  input.hidden = true;
  input.tabIndex = -1;
  const button = el("button", "pv-attach");
  button.type = "button";
  button.title = T.attach;
  button.setAttribute("aria-label", T.attach);
  button.append(icon(CLIP, 18));
  button.addEventListener("click", () => {
    if (!button.disabled) input.click();
  });
  input.addEventListener("change", () => {
    const file = input.files && input.files[0];
    input.value = ""; // the same file can be chosen again
    if (file) upload(file);
  });
  ui.attach = button;
  const wrap = el("span", "pv-attach-wrap");
  wrap.append(button, input);
  return wrap;
}

function sizeText(bytes) {
  const n = Number(bytes) || 0;
  const number = (value, digits) => value.toLocaleString(FORMAT_LOCALE, { maximumFractionDigits: digits, minimumFractionDigits: digits });
  if (n < 1024) return t("sizeB", { n: number(n, 0) });
  if (n < 1024 * 1024) return t("sizeKB", { n: number(Math.round(n / 1024), 0) });
  return t("sizeMB", { n: number(n / (1024 * 1024), 1) });
}

function upload(file) {
  if (file.size > MAX_BYTES) {
    showNotice(t("tooBig", { max: Math.round(MAX_BYTES / (1024 * 1024)) }));
    return;
  }
  const row = el("div", "pv-row pv-visitor pv-sending");
  row.dataset.pending = "1";
  const bubble = el("div", "pv-bubble pv-att-upload");
  bubble.append(el("span", "pv-att-name", file.name));
  const bar = el("progress", "pv-att-progress");
  bar.max = 100;
  bar.value = 0;
  bubble.append(bar);
  const meta = el("div", "pv-meta", t("uploading", { n: 0 }));
  meta.setAttribute("aria-live", "polite");
  row.append(bubble, meta);
  mutate(() => ui.log.append(row), true);

  const body = new FormData();
  body.append("client_id", uuid());
  body.append("file", file, file.name);
  // XMLHttpRequest: fetch() cannot report upload progress.
  const xhr = new XMLHttpRequest();
  xhr.open("POST", `${API}/attachments`);
  xhr.withCredentials = false; // the token alone says who we are
  if (S.token) xhr.setRequestHeader("Authorization", `Bearer ${S.token}`);
  xhr.setRequestHeader("Accept", "application/json");
  xhr.upload.addEventListener("progress", (e) => {
    if (!e.lengthComputable) return;
    const n = Math.min(99, Math.round((e.loaded / e.total) * 100));
    bar.value = n;
    meta.textContent = t("uploading", { n });
  });
  xhr.addEventListener("load", () => {
    let data = null;
    try {
      data = JSON.parse(xhr.responseText);
    } catch (err) {
      data = null;
    }
    if (xhr.status >= 200 && xhr.status < 300 && data && data.event) {
      row.remove();
      onEvent(data.event, true);
      return;
    }
    failed(row, meta, refusalText(xhr.status, data));
  });
  xhr.addEventListener("error", () => failed(row, meta, T.uploadFailed));
  xhr.send(body);
}

function refusalText(status, data) {
  const detail = data && typeof data.detail === "string" ? data.detail : "";
  if (detail) return detail;
  if (status === 413) return t("tooBig", { max: Math.round(MAX_BYTES / (1024 * 1024)) });
  if (status === 415) return T.wrongType;
  if (status === 429) return t("rateLimited", { n: 60 });
  return T.uploadFailed;
}

function failed(row, meta, text) {
  row.classList.remove("pv-sending");
  row.classList.add("pv-failed");
  delete row.dataset.pending;
  row.querySelector(".pv-att-progress")?.remove();
  meta.textContent = t("notSentReason", { reason: text });
  meta.setAttribute("role", "alert");
  showNotice(text);
  setTimeout(() => row.remove(), 15000);
}

// --- a message's file -------------------------------------------------------------------------

const blobs = new Map(); // link variant + attachment id → blob: URL, fetched once per page

async function fetchBlob(att, variant, seq) {
  const key = `${variant}:${att.id}`;
  if (blobs.has(key)) return blobs.get(key);
  let url = variant === "thumb" ? att.thumb_url : att.url;
  let res = await fetch(url, { headers: { Authorization: `Bearer ${S.token}` }, credentials: "omit" });
  if (res.status === 403 && typeof seq === "number") {
    // The link expired (1 h): the conversation's events come with fresh ones.
    url = await freshLink(att.id, variant, seq);
    if (url) res = await fetch(url, { headers: { Authorization: `Bearer ${S.token}` }, credentials: "omit" });
  }
  if (!res.ok) throw new Error(`HTTP ${res.status}`);
  const blobUrl = URL.createObjectURL(await res.blob());
  blobs.set(key, blobUrl);
  return blobUrl;
}

async function freshLink(id, variant, seq) {
  const conv = encodeURIComponent(S.convId || "");
  const res = await fetch(`${API}/events?conversation=${conv}&after_seq=${Math.max(0, seq - 1)}`, {
    headers: { Authorization: `Bearer ${S.token}`, Accept: "application/json" },
    credentials: "omit",
    cache: "no-store",
  });
  if (!res.ok) return null;
  const data = await res.json();
  for (const ev of (data && data.events) || []) {
    const att = ev.data && ev.data.attachment;
    if (att && att.id === id) return variant === "thumb" ? att.thumb_url : att.url;
  }
  return null;
}

/** Replace a message row's text bubble with its attachment (the text is the file's name). */
export function fillAttachment(row, ev) {
  const att = ev.data && ev.data.attachment;
  const bubble = row.querySelector(".pv-bubble");
  if (!att || !bubble || typeof att.id !== "string") return;
  bubble.textContent = "";
  bubble.classList.add("pv-att");
  const name = String(att.name || T.attachmentName);
  if (att.thumb_url) {
    const open = el("button", "pv-att-thumb");
    open.type = "button";
    open.setAttribute("aria-label", t("openImage", { name }));
    const img = el("img");
    img.alt = name;
    const w = Number(att.width) || 320;
    const h = Number(att.height) || 240;
    const scale = Math.min(1, 220 / w, 220 / h);
    img.width = Math.max(1, Math.round(w * scale));
    img.height = Math.max(1, Math.round(h * scale));
    open.append(img);
    fetchBlob(att, "thumb", ev.seq)
      .then((src) => (img.src = src))
      .catch(() => open.replaceWith(el("span", "pv-att-missing", T.unavailable)));
    open.addEventListener("click", () => showImage(att, ev.seq));
    bubble.append(open);
  } else {
    const link = el("a", "pv-att-file");
    link.href = "#";
    link.setAttribute("aria-label", t("download", { name }));
    link.append(el("span", "pv-att-icon", "PDF"), el("span", "pv-att-name", name), el("span", "pv-att-size", sizeText(att.size)));
    link.addEventListener("click", (e) => {
      e.preventDefault();
      download(att, ev.seq, link);
    });
    bubble.append(link);
  }
}

async function download(att, seq, link) {
  try {
    const src = await fetchBlob(att, "file", seq);
    const a = el("a");
    a.href = src;
    a.download = String(att.name || `${T.attachmentName}.pdf`);
    a.hidden = true;
    document.body.append(a);
    a.click();
    a.remove();
    link.dataset.downloaded = "1";
  } catch (err) {
    showNotice(T.unavailable);
  }
}

async function showImage(att, seq) {
  const overlay = el("div", "pv-lightbox");
  overlay.setAttribute("role", "dialog");
  overlay.setAttribute("aria-modal", "true");
  overlay.setAttribute("aria-label", String(att.name || ""));
  const close = el("button", "pv-lightbox-close", "×");
  close.type = "button";
  close.setAttribute("aria-label", T.closeImage);
  const img = el("img");
  img.alt = String(att.name || "");
  overlay.append(img, close);
  const previous = document.activeElement;
  const end = () => {
    overlay.remove();
    document.removeEventListener("keydown", onKey, true);
    if (previous && previous.focus) previous.focus();
  };
  const onKey = (e) => {
    if (e.key === "Escape") {
      e.stopPropagation();
      end();
    }
  };
  overlay.addEventListener("click", (e) => {
    if (e.target !== img) end();
  });
  document.addEventListener("keydown", onKey, true);
  document.body.append(overlay);
  close.focus();
  try {
    img.src = await fetchBlob(att, "file", seq);
  } catch (err) {
    end();
    showNotice(T.unavailable);
  }
}
