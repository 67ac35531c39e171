/*
 * The postMessage bridge to the loader on the customer's page: {event, payload} messages, sent only
 * to config.parentOrigin and accepted only from it (and only from window.parent).
 */

import { focusComposer } from "./composer.js";
import { EMBEDDED, PARENT_ORIGIN } from "./config.js";
import { sendFrame } from "./socket.js";
import { S, ui } from "./state.js";

export function toParent(event, payload = {}) {
  if (!EMBEDDED || !PARENT_ORIGIN || PARENT_ORIGIN === "null") return;
  try {
    window.parent.postMessage({ event, payload }, PARENT_ORIGIN);
  } catch (err) {
    /* invalid origin string: nothing to tell */
  }
}

export function requestClose() {
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

export function onParentMessage(e) {
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
