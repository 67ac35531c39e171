/*
 * Pivra chat widget: the visitor-facing UI that runs inside Pivra's iframe. This entry module wires
 * the pieces together and starts them; the frame loads it with <script type="module"> (no build
 * step) and preloads the modules below.
 *
 * Protocol: README.md, "Widget protocol". In short: POST /session → GET /events (history) → WebSocket
 * (hello / welcome / event / state / ack …), falling back to an SSE stream read with fetch() plus
 * HTTP POSTs when a socket cannot be opened. Both transports feed the same handleFrame().
 *
 * Modules (static/widget/chat/), by concern:
 *   config.js        config from the frame, visitor-facing strings
 *   util.js          element/icon builders, linkified text, ids, storage, backoff
 *   state.js         the shared model (S) and element references (ui); viewState()
 *   layout.js        theme, skeleton, header, banner and notices, scroll pinning
 *   messages.js      the log: event rows in seq order, greeting, offer buttons
 *   typing.js        typing indicator and the streamed AI draft
 *   conversation.js  events and state snapshots applied to the screen, conversation switches
 *   panels.js        pending / team busy / resolved cards
 *   composer.js      the composer, "Talk to a human"
 *   marks.js         the visitor's "typing" and "seen" marks
 *   protocol.js      incoming frames, client actions pending until acked (socket or HTTP)
 *   api.js           HTTP calls, session token, history
 *   socket.js        WebSocket transport with resume
 *   sse.js           SSE-over-fetch fallback
 *   bridge.js        postMessage bridge to the loader
 * They import one another's functions freely. The import cycles this makes are safe because no
 * module calls an imported function while it loads: the only code that runs at load time builds
 * constants from literals and config.js, which imports nothing. Everything else waits for start()
 * below.
 *
 * Rules every module keeps:
 *  - Text from the server or the visitor is inserted with textContent / text nodes, never as HTML.
 *  - postMessage goes only to config.parentOrigin; messages are accepted only from it.
 *  - Events are deduplicated by seq and kept in seq order, whatever order they arrive in.
 *  - Every client action carries a client_id and stays "pending" until acked, so it can be resent
 *    with the same id after a reconnect (the server dedupes).
 */

import { createSession, loadHistory } from "./chat/api.js";
import { onParentMessage, requestClose, toParent } from "./chat/bridge.js";
import { ACCENT, CONFIG, DIR, EMBEDDED, LANG, T } from "./chat/config.js";
import { applyState, renderView } from "./chat/conversation.js";
import { applyTheme, buildUI, setConnected } from "./chat/layout.js";
import { startMarks } from "./chat/marks.js";
import { renderGreeting } from "./chat/messages.js";
import { connect, reconnectNow, startHeartbeat } from "./chat/socket.js";
import { S, ui } from "./chat/state.js";
import { backoff, sleep } from "./chat/util.js";

async function start() {
  applyTheme();
  buildUI();
  renderGreeting();
  renderView();
  startMarks(); // typing and "seen" (marks.js)
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
        toParent("pivra:ready", readyPayload());
      }
      // A 503 (Redis away) names its pause in Retry-After; "Connecting…" shows meanwhile.
      await sleep(Math.max(backoff(attempt), (Number(err && err.retryAfter) || 0) * 1000));
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
  if (!readySent) toParent("pivra:ready", readyPayload());
}

// The loader on the customer's page has no strings of its own: it takes the launcher's words and the
// side it sits on (bottom left for right-to-left languages) from here.
function readyPayload() {
  return {
    accentColor: ACCENT,
    lang: LANG,
    dir: DIR,
    labels: { open: T.openChat, close: T.closeChat, frame: T.frameTitle, unread: T.openChatUnread, plural: CONFIG.plural },
  };
}

start();
