/*
 * HTTP: the fetch wrapper (bearer token, no cookies, {code, detail} errors), the session call that
 * issues and stores the visitor token, its renewal after a 401, and the history load.
 */

import { API, CONFIG, LANG, T, TOKEN_KEY } from "./config.js";
import { applyState, onEvent, switchTo } from "./conversation.js";
import { mutate, showNotice } from "./layout.js";
import { dropSocket } from "./socket.js";
import { S } from "./state.js";
import { store } from "./util.js";

export async function api(method, path, body) {
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

export async function createSession() {
  const data = await api("POST", "/session", {
    public_key: CONFIG.publicKey,
    token: store.get(TOKEN_KEY),
    locale: navigator.language || "",
    // The negotiated language: a conversation this session starts is held in it (waiting / busy texts).
    language: LANG,
    page: S.pageUrl,
  });
  if (!data || !data.token) throw new Error("no token");
  S.token = data.token;
  store.set(TOKEN_KEY, data.token);
  return data;
}

export function renewSession() {
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

export async function renewSessionAndReconnect() {
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

export async function loadHistory(convId) {
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
