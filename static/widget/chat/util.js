/*
 * Helpers that know nothing about the widget's state: element and icon builders, linkified text,
 * ids, storage that survives a blocked localStorage, and the reconnect backoff.
 */

import { FORMAT_LOCALE } from "./config.js";

export function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text != null) node.textContent = String(text);
  return node;
}

// Inline icons are built node by node: constant path data, never markup strings.
export function icon(paths, size = 20) {
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

export const ICONS = {
  chevronDown: ["M6 9l6 6 6-6"],
  send: ["M12 19V5", "M5 12l7-7 7 7"],
  person: ["M12 12a4 4 0 1 0 0-8 4 4 0 0 0 0 8z", "M4 20c0-3.3 3.6-6 8-6s8 2.7 8 6"],
  refresh: ["M20 11a8 8 0 1 0-2.3 5.7", "M20 4v7h-7"],
};

export function uuid() {
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

export const store = {
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

export function formatTime(iso) {
  const date = iso ? new Date(iso) : new Date();
  if (Number.isNaN(date.getTime())) return "";
  try {
    // The visitor's locale in the widget's language, not the host page's.
    return new Intl.DateTimeFormat(FORMAT_LOCALE, { dateStyle: "medium", timeStyle: "short" }).format(date);
  } catch (err) {
    return date.toLocaleString();
  }
}

// A translated template with each {value} isolated in a <bdi>: a phone number or an email address
// keeps its own direction inside right-to-left text ("+33 6 12 34 56 78" stays readable).
export function appendIsolated(parent, template, vars) {
  const parts = String(template).split(/(\{\w+\})/);
  for (const part of parts) {
    const key = /^\{(\w+)\}$/.exec(part);
    if (key && Object.prototype.hasOwnProperty.call(vars, key[1])) parent.append(el("bdi", "", vars[key[1]]));
    else if (part) parent.append(part);
  }
  return parent;
}

const URL_RE = /\bhttps?:\/\/[^\s<>"'`]+/gi;

// Plain text with http(s) links made clickable; everything else stays a text node.
export function appendRichText(parent, text) {
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

export const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Exponential backoff from 0.5 s to 10 s with jitter, so many widgets don't reconnect in lockstep.
export function backoff(attempt) {
  const base = Math.min(10000, 500 * 2 ** Math.min(attempt, 5));
  return base / 2 + Math.random() * (base / 2);
}
