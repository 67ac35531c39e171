// The console's words and formats in the agent's language.
//
// Strings: Django's JavaScript catalogue (/dashboard/jsi18n/<lang>/, a classic <script> in console/base.html
// loaded before every module) defines ``window.django``. These wrappers call it, and fall back to the English
// msgid when it did not load (offline, blocked): a missing catalogue never breaks a page, never throws.
// Call them with literal strings — ``gettext("Claim")``, ``ngettext("%(n)s chat", "%(n)s chats", n)`` — so
// ``makemessages -d djangojs`` finds them; sentences with values are built with ``interpolate(fmt, {…}, true)``
// and named ``%(name)s`` placeholders, never by concatenation (a translation may reorder them).
//
// Dates and numbers: Intl in the console's language (``<html lang>``, the agent's), refined by the browser's own
// region when it speaks the same language (an en-GB browser with an English console keeps its 24-hour clock).

const catalogue = () => (typeof window !== "undefined" && window.django) || null;

export function gettext(msgid) {
  try {
    const django = catalogue();
    if (django && typeof django.gettext === "function") return String(django.gettext(msgid));
  } catch {
    /* a broken catalogue: English */
  }
  return msgid;
}

export function ngettext(singular, plural, n) {
  try {
    const django = catalogue();
    if (django && typeof django.ngettext === "function") return String(django.ngettext(singular, plural, n));
  } catch {
    /* a broken catalogue: English */
  }
  return Number(n) === 1 ? singular : plural;
}

export function pgettext(context, msgid) {
  try {
    const django = catalogue();
    if (django && typeof django.pgettext === "function") return String(django.pgettext(context, msgid));
  } catch {
    /* a broken catalogue: English */
  }
  return msgid;
}

/** ``interpolate("%(name)s took over", {name}, true)`` (named) or ``interpolate("%s of %s", [a, b])``. */
export function interpolate(fmt, obj, named = false) {
  const text = String(fmt);
  try {
    if (named) {
      return text.replace(/%\(([^)]+)\)s/g, (match, key) =>
        obj && Object.prototype.hasOwnProperty.call(obj, key) ? String(obj[key]) : match,
      );
    }
    const values = Array.isArray(obj) ? [...obj] : [];
    return text.replace(/%s/g, () => (values.length ? String(values.shift()) : ""));
  } catch {
    return text;
  }
}

// --- formats ------------------------------------------------------------------------------------

/** The locale for Intl: the console's language, with the browser's region when the language is the same. */
export function uiLocale() {
  const lang = (document.documentElement.lang || "").trim() || "en";
  const primary = lang.toLowerCase().split("-")[0];
  const browser = (navigator.languages && navigator.languages.length ? navigator.languages : [navigator.language]).filter(Boolean);
  const sameLanguage = browser.find((tag) => tag.toLowerCase().split("-")[0] === primary);
  // A regional console language (pt-br) is the agent's choice: only an exact match refines it.
  const chosen = lang.includes("-") ? browser.find((tag) => tag.toLowerCase() === lang.toLowerCase()) || lang : sameLanguage || lang;
  try {
    return Intl.getCanonicalLocales(chosen)[0] || "en";
  } catch {
    return "en";
  }
}

const formatters = new Map();

function formatter(kind, options) {
  const key = `${kind}|${uiLocale()}|${JSON.stringify(options || {})}`;
  if (!formatters.has(key)) {
    let made;
    try {
      made = new Intl[kind](uiLocale(), options);
    } catch {
      made = new Intl[kind](undefined, options);
    }
    formatters.set(key, made);
  }
  return formatters.get(key);
}

const toDate = (value) => (value instanceof Date ? value : new Date(value));

/** A date and time in the agent's language; "" for an invalid date. */
export function formatDateTime(value, options = { day: "numeric", month: "short", hour: "2-digit", minute: "2-digit" }) {
  const date = toDate(value);
  if (Number.isNaN(date.getTime())) return "";
  return formatter("DateTimeFormat", options).format(date);
}

/** A time of day (hours and minutes) in the agent's language; "" for an invalid date. */
export function formatTime(value, options = { hour: "2-digit", minute: "2-digit" }) {
  return formatDateTime(value, options);
}

/** A number in the agent's language (grouping, decimal sign, digits). */
export function formatNumber(n, options = {}) {
  const value = Number(n);
  if (!Number.isFinite(value)) return String(n);
  return formatter("NumberFormat", options).format(value);
}

/** "3 minutes ago", "in 2 hours" in the agent's language, for a date relative to now. */
export function formatRelative(value, now = Date.now()) {
  const date = toDate(value);
  if (Number.isNaN(date.getTime())) return "";
  const seconds = Math.round((date.getTime() - now) / 1000);
  const steps = [
    ["second", 60],
    ["minute", 60],
    ["hour", 24],
    ["day", 7],
    ["week", 4.35],
    ["month", 12],
    ["year", Infinity],
  ];
  let amount = seconds;
  for (const [unit, size] of steps) {
    if (Math.abs(amount) < size) return formatter("RelativeTimeFormat", { numeric: "auto" }).format(Math.round(amount), unit);
    amount /= size;
  }
  return "";
}

/** The direction of the console's text: "rtl" or "ltr" (for anything a script positions by hand). */
export function textDirection(node = document.documentElement) {
  try {
    return getComputedStyle(node).direction === "rtl" ? "rtl" : "ltr";
  } catch {
    return document.documentElement.dir === "rtl" ? "rtl" : "ltr";
  }
}
