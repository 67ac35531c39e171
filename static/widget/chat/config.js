/*
 * Config and visitor-facing strings, read once from the frame's json_script config (README
 * "Widget protocol"). Nothing here changes after load, and this module imports nothing, so every
 * other module can rely on these values being ready.
 */

export const CONFIG = readConfig();
const DEFAULT_ACCENT = "#4f46e5";
export const ACCENT = safeColor(CONFIG.accentColor) || DEFAULT_ACCENT;
export const MAX_LEN = Number(CONFIG.maxLength) > 0 ? Math.floor(Number(CONFIG.maxLength)) : 2000;
export const API = String(CONFIG.apiBase || "/api/widget").replace(/\/+$/, "");
export const WS_PATH = String(CONFIG.wsPath || "/ws/widget/");
export const TOKEN_KEY = `pivra:${CONFIG.publicKey}:token`;
export const PARENT_ORIGIN = typeof CONFIG.parentOrigin === "string" ? CONFIG.parentOrigin : "";
export const EMBEDDED = window.parent !== window;

export const LANG = typeof CONFIG.lang === "string" && CONFIG.lang ? CONFIG.lang : navigator.language || "en";
// Dates and numbers: the visitor's own locale when it is of the widget's language (an en-GB visitor keeps
// a 24-hour clock in the English widget), else the widget's language.
export const FORMAT_LOCALE = (() => {
  const primary = LANG.split("-")[0].toLowerCase();
  const own = (navigator.languages || [navigator.language]).find((code) => typeof code === "string" && code.split("-")[0].toLowerCase() === primary);
  return own || LANG;
})();
export const DIR = CONFIG.dir === "rtl" ? "rtl" : "ltr";

// Every visitor-facing string, already in the negotiated language (pivra/widget/strings.py is the
// one source: this file holds no English). A plural entry is the list of the language's forms;
// CONFIG.plural says which form each Intl.PluralRules category takes. State-specific texts (the
// owner's waiting / busy messages) come from the state snapshot.
export const T = CONFIG.strings && typeof CONFIG.strings === "object" ? CONFIG.strings : {};
const PLURAL = CONFIG.plural && typeof CONFIG.plural === "object" ? CONFIG.plural : { one: 0, other: 1 };
const pluralRules = makePluralRules();

export const BOT_NAME = String(CONFIG.name || T.assistant || "");

// t("phoneThanks", { phone }) -> the string with its {placeholders} filled.
export function t(key, vars) {
  const value = T[key];
  const text = Array.isArray(value) ? String(value[value.length - 1] ?? "") : String(value ?? "");
  return vars ? fmt(text, vars) : text;
}

// tn("ratingStars", 3) -> the language's plural form for 3, with {n} (and vars) filled.
export function tn(key, n, vars) {
  const value = T[key];
  const forms = Array.isArray(value) ? value : [value];
  let index = 0;
  try {
    const category = pluralRules ? pluralRules.select(n) : n === 1 ? "one" : "other";
    index = category in PLURAL ? PLURAL[category] : PLURAL.other ?? forms.length - 1;
  } catch (err) {
    index = forms.length - 1;
  }
  const form = forms[Math.min(Math.max(0, Number(index) || 0), forms.length - 1)];
  return fmt(String(form ?? ""), { n, ...(vars || {}) });
}

function makePluralRules() {
  try {
    return new Intl.PluralRules(LANG);
  } catch (err) {
    return null;
  }
}

function readConfig() {
  try {
    const node = document.getElementById("pivra-config");
    const value = node ? JSON.parse(node.textContent || "{}") : {};
    return value && typeof value === "object" ? value : {};
  } catch (err) {
    return {};
  }
}

export function fmt(template, vars) {
  return String(template).replace(/\{(\w+)\}/g, (whole, key) => (Object.prototype.hasOwnProperty.call(vars, key) ? String(vars[key]) : whole));
}

function safeColor(value) {
  return typeof value === "string" && /^#([0-9a-f]{3}|[0-9a-f]{6})$/i.test(value.trim()) ? value.trim() : null;
}
