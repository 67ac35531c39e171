/*
 * The visitor's live marks (README "Widget protocol"): "typing" while they write to a person, and "seen"
 * once agent messages have been on screen with the widget open and the page visible. Neither is an
 * action: nothing waits for an ack, a lost one is simply superseded by the next. Over the socket they
 * are frames; in SSE mode, small POSTs.
 *
 * What the visitor types goes with "typing" only when the chatbot's owner turned the live preview on
 * (config.typingPreview) — and the server drops it otherwise anyway.
 */

import { api } from "./api.js";
import { CONFIG, T } from "./config.js";
import { sendFrame } from "./socket.js";
import { S, ui } from "./state.js";
import { el } from "./util.js";

const PREVIEW = CONFIG.typingPreview === true;
const PREVIEW_MAX = 1000;
// "typing on" at most every 2 s while keys are pressed (every second with the preview, so it stays
// live); "off" on send, on blur and after 5 s without a key.
const TYPING_EVERY_MS = PREVIEW ? 1000 : 2000;
const SILENCE_MS = 5000;
// Agent messages shown in a burst are reported once.
const SEEN_DELAY_MS = 700;

const typing = { on: false, sentAt: 0, sentText: "", silence: 0, trailing: 0 };
const seen = { conv: null, reported: 0, timer: 0 };

// True when the mark left (a socket that is reconnecting cannot carry it: the next one will).
function transmit(frame, route) {
  if (S.transport === "ws") return sendFrame(frame);
  if (S.transport !== "sse" || !S.token) return false;
  const { type, ...body } = frame;
  api("POST", route, body).catch(() => null); // a lost mark is superseded by the next one
  return true;
}

/* ------------------------------------------------------------------ typing */

// Only a person reads typing: while a handoff is open (the server checks too).
function talkingToTeam() {
  return Boolean(S.convId && S.state && S.state.status === "handoff");
}

function sendTyping(on) {
  const frame = { type: "typing", conversation: S.convId, on };
  const text = ui.input.value.slice(0, PREVIEW_MAX);
  if (on && PREVIEW) frame.text = text;
  typing.on = on;
  typing.sentAt = on ? Date.now() : 0;
  typing.sentText = on ? text : "";
  transmit(frame, "/typing");
}

export function stopTyping() {
  clearTimeout(typing.silence);
  clearTimeout(typing.trailing);
  if (typing.on && S.convId) sendTyping(false);
  typing.on = false;
}

function onInput() {
  if (!talkingToTeam() || ui.input.disabled) return;
  if (!ui.input.value.trim()) {
    stopTyping();
    return;
  }
  const due = Date.now() - typing.sentAt >= TYPING_EVERY_MS;
  const changed = PREVIEW && ui.input.value.slice(0, PREVIEW_MAX) !== typing.sentText;
  if (!typing.on || (due && (changed || !PREVIEW))) sendTyping(true);
  else if (changed) {
    // The preview's last words must arrive even when the visitor stops within the throttle window.
    clearTimeout(typing.trailing);
    typing.trailing = setTimeout(() => {
      if (typing.on && ui.input.value.trim()) sendTyping(true);
    }, TYPING_EVERY_MS - (Date.now() - typing.sentAt));
  }
  clearTimeout(typing.silence);
  typing.silence = setTimeout(stopTyping, SILENCE_MS);
}

/* ------------------------------------------------------------------ seen */

function visible() {
  return S.open && document.visibilityState === "visible";
}

function highestAgentSeq() {
  let top = 0;
  for (const row of ui.log.querySelectorAll(".pv-row.pv-agent[data-seq]")) top = Math.max(top, Number(row.dataset.seq) || 0);
  return top;
}

function scheduleSeen() {
  if (seen.conv !== S.convId) {
    seen.conv = S.convId;
    seen.reported = 0;
  }
  if (!visible() || !S.convId) return;
  clearTimeout(seen.timer);
  seen.timer = setTimeout(reportSeen, SEEN_DELAY_MS);
}

function reportSeen() {
  if (!visible() || seen.conv !== S.convId) return;
  const seq = highestAgentSeq();
  if (seq <= seen.reported) return;
  if (transmit({ type: "seen", conversation: S.convId, seq }, "/seen")) seen.reported = seq;
}

/* ------------------------------------------------------------------ preview notice */

// With the preview on, the visitor is told, under the composer, while the team can read it (waiting for
// or talking to a person: the states in which the widget sends "typing").
function startPreviewNotice() {
  if (!PREVIEW || !ui.input.form) return;
  const note = el("p", "pv-preview-note", T.previewNotice);
  note.dataset.previewNote = "";
  note.hidden = true;
  ui.input.form.append(note);
  const show = () => {
    note.hidden = !["pending", "active"].includes(document.body.dataset.state);
  };
  new MutationObserver(show).observe(document.body, { attributes: true, attributeFilter: ["data-state"] });
  show();
}

/* ------------------------------------------------------------------ wiring */

export function startMarks() {
  startPreviewNotice();
  ui.input.addEventListener("input", onInput);
  ui.input.addEventListener("blur", stopTyping);
  ui.input.addEventListener("keydown", (e) => {
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing) stopTyping(); // the composer sends it
  });
  ui.input.form?.addEventListener("submit", stopTyping);
  // New rows in the log (an agent message), the widget opened, the page shown again, a (re)connect.
  new MutationObserver(scheduleSeen).observe(ui.log, { childList: true });
  new MutationObserver(scheduleSeen).observe(document.body, { attributes: true, attributeFilter: ["data-open"] });
  document.addEventListener("visibilitychange", () => {
    if (document.visibilityState === "visible") scheduleSeen();
    else stopTyping();
  });
  setInterval(() => {
    // A report the transport could not carry (the socket was reconnecting) goes with the next batch.
    if (S.connected && highestAgentSeq() > seen.reported) scheduleSeen();
  }, 5000);
}
