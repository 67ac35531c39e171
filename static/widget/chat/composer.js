/*
 * The composer and the "Talk to a human" chip: input sizing and counter, Enter to send, and the
 * optimistic "sending" row that stays pending until its ack (a refusal gives the text back).
 */

import { attachButton } from "./attachments.js";
import { MAX_LEN, T, tn } from "./config.js";
import { markSeen } from "./gaps.js";
import { mutate, showNotice } from "./layout.js";
import { insertBySeq, messageRow } from "./messages.js";
import { sendAction } from "./protocol.js";
import { S, ui, viewState } from "./state.js";
import { ICONS, el, icon, uuid } from "./util.js";

export function buildComposer() {
  const form = el("form", "pv-composer");
  form.noValidate = true;
  ui.input = el("textarea", "pv-input");
  ui.input.rows = 1;
  ui.input.maxLength = MAX_LEN;
  ui.input.placeholder = T.placeholder;
  ui.input.setAttribute("aria-label", T.messageLabel);
  ui.input.setAttribute("aria-describedby", "pv-counter");
  ui.input.setAttribute("enterkeyhint", "send");
  ui.send = el("button", "pv-send");
  ui.send.type = "submit";
  ui.send.setAttribute("aria-label", T.send);
  ui.send.title = T.send;
  ui.send.append(icon(ICONS.send, 18));
  ui.counter = el("div", "pv-counter");
  ui.counter.id = "pv-counter";
  ui.counter.hidden = true;
  const row = el("div", "pv-composer-row");
  row.append(attachButton(), ui.input, ui.send);
  form.append(row, ui.counter);

  form.addEventListener("submit", (e) => {
    e.preventDefault();
    submitComposer();
  });
  ui.input.addEventListener("keydown", (e) => {
    // Enter sends, Shift+Enter adds a line; never interrupt an IME composition.
    if (e.key === "Enter" && !e.shiftKey && !e.isComposing && e.keyCode !== 229) {
      e.preventDefault();
      submitComposer();
    }
  });
  ui.input.addEventListener("input", onComposerInput);
  return form;
}

function onComposerInput() {
  autoresize();
  const len = ui.input.value.length;
  const near = len >= MAX_LEN * 0.8 || MAX_LEN - len <= 100;
  ui.counter.hidden = !near;
  ui.counter.textContent = near ? `${len} / ${MAX_LEN}` : "";
  ui.counter.classList.toggle("pv-over", len >= MAX_LEN);
  ui.send.disabled = ui.input.disabled || !ui.input.value.trim();
}

function autoresize() {
  ui.input.style.height = "auto";
  ui.input.style.height = `${Math.min(ui.input.scrollHeight, 132)}px`;
}

export function renderComposer(vs) {
  const closed = vs === "resolved";
  // In "team busy" nobody reads the chat: the panel's two choices replace the composer.
  ui.composer.hidden = vs === "busy";
  ui.input.disabled = closed;
  if (ui.attach) ui.attach.disabled = closed;
  ui.input.placeholder = closed ? T.closedPlaceholder : T.placeholder;
  if (closed) ui.input.setAttribute("aria-describedby", "pv-counter pv-resolved-note");
  else ui.input.setAttribute("aria-describedby", "pv-counter");
  onComposerInput();
}

function submitComposer() {
  if (ui.input.disabled) return;
  const text = ui.input.value.trim();
  if (!text) return;
  if (text.length > MAX_LEN) {
    showNotice(tn("tooLong", MAX_LEN));
    return;
  }
  ui.input.value = "";
  onComposerInput();

  const clientId = uuid();
  const row = messageRow("visitor", text, null);
  row.classList.add("pv-sending");
  row.dataset.pending = "1";
  row.dataset.clientId = clientId;
  const meta = el("div", "pv-meta", T.sending);
  row.append(meta);
  mutate(() => ui.log.append(row), true);

  sendAction(
    { type: "message", client_id: clientId, text },
    {
      el: row,
      onAck: (f) => {
        row.classList.remove("pv-sending");
        delete row.dataset.pending;
        meta.remove();
        if (typeof f.seq === "number" && !S.rendered.has(f.seq)) {
          row.dataset.seq = String(f.seq);
          S.rendered.set(f.seq, row);
          markSeen(f.seq); // an ack past a hole (a frame lost meanwhile) fetches the hole
          insertBySeq(row, f.seq);
        } else if (typeof f.seq === "number") {
          row.remove(); // the stored event is already on screen
        }
      },
      onError: (f) => {
        if (f.code === "rate_limited" || f.code === "message_too_long") {
          // Nothing was stored: give the text back so the visitor can send it again.
          row.remove();
          restoreText(text);
        } else {
          row.classList.remove("pv-sending");
          row.classList.add("pv-failed");
          meta.textContent = T.notSent;
        }
        return false;
      },
    },
  );
}

function restoreText(text) {
  const current = ui.input.value;
  ui.input.value = current ? `${text}\n${current}` : text;
  onComposerInput();
}

export function requestHuman() {
  ui.human.disabled = true;
  sendAction({ type: "handoff.request" }, { onError: () => (ui.human.disabled = false) });
  // If the state never moves (lost frame), let the visitor try again.
  setTimeout(() => {
    if (viewState() === "ai") ui.human.disabled = false;
  }, 10000);
}

export function focusComposer() {
  if (!ui.composer.hidden && !ui.input.disabled) ui.input.focus();
}
