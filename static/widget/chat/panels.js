/*
 * The state panel under the log: the pending spinner, the team-busy card (mobile number form and
 * "Continue with AI") and the resolved card ("Start new conversation"). It is rebuilt only when its
 * inputs change, and a rebuild keeps the typed number and the focus.
 */

import { focusComposer } from "./composer.js";
import { T, t, tn } from "./config.js";
import { mutate } from "./layout.js";
import { sendAction } from "./protocol.js";
import { S, ui } from "./state.js";
import { endChatBar } from "./endchat.js";
import { resolvedExtras, surveyKey } from "./survey.js";
import { appendIsolated, el } from "./util.js";

export function renderPanel(vs) {
  const h = (S.state && S.state.handoff) || {};
  const key = JSON.stringify([vs, h.waiting_message, h.busy_message, h.busy_reason, h.offline_message, h.lead_phone, h.position, h.position_over, h.wait_seconds, h.transfer_to, surveyKey()]);
  if (key === S.panelKey) return;
  S.panelKey = key;
  const focusWasInside = ui.panel.contains(document.activeElement);
  const typedPhone = ui.phoneInput ? ui.phoneInput.value : "";
  ui.phoneInput = ui.phoneError = ui.phoneSubmit = null;

  let card = null;
  if (vs === "pending") card = pendingCard(h);
  else if (vs === "busy") card = busyCard(h, typedPhone);
  else if (vs === "resolved") card = resolvedCard();
  else if (vs === "ai") card = endChatBar();
  mutate(() => {
    ui.panel.replaceChildren(...(card ? [card] : []));
    ui.panel.hidden = !card;
    ui.panel.dataset.state = card ? vs : "";
  });
  if (focusWasInside) {
    const target = ui.panel.querySelector("input, button:not([disabled])");
    if (target) target.focus();
    else focusComposer();
  }
}

function pendingCard(h) {
  const card = el("div", "pv-card pv-card-pending");
  card.setAttribute("role", "status");
  const spinner = el("span", "pv-spinner");
  spinner.setAttribute("aria-hidden", "true");
  const body = el("div", "pv-card-body");
  // A transfer waiting for the colleague to accept says who is coming (and no place in line: it is theirs).
  if (h.transfer_to) {
    body.append(el("p", "pv-card-title", t("transferTitle", { agent: h.transfer_to })), el("p", "pv-card-text", T.transferText));
    card.append(spinner, body);
    return card;
  }
  body.append(el("p", "pv-card-title", T.waitingTitle), el("p", "pv-card-text", h.waiting_message || T.waitingDefault));
  if (Number(h.position) > 0) {
    const line = el("p", "pv-card-text pv-queue", queueText(Number(h.position), h.wait_seconds));
    line.dataset.position = String(h.position);
    body.append(line);
  } else if (Number(h.position_over) > 0) {
    // Further back than the numbered places: no exact number, no estimate (it is the usual wait of
    // one request, which says little about a long line).
    const line = el("p", "pv-card-text pv-queue", tn("queueBeyond", Number(h.position_over)));
    line.dataset.position = "over";
    body.append(line);
  }
  card.append(spinner, body);
  return card;
}

// "You are number 3 in line · usually under 2 minutes" (the wait is the workspace's median time to
// claim; null means too little history).
export function queueText(position, waitSeconds) {
  const where = position === 1 ? T.queueNext : t("queuePosition", { n: position });
  return t("queueLine", { position: where, wait: waitText(waitSeconds) });
}

function waitText(seconds) {
  if (typeof seconds !== "number" || !(seconds >= 0)) return T.waitFew;
  if (seconds < 60) return T.waitUnderOne;
  const minutes = Math.floor(seconds / 60) + 1;
  return minutes > 60 ? T.waitOverHour : tn("waitUnder", minutes);
}

function busyCard(h, typedPhone) {
  const card = el("div", "pv-card pv-card-busy");
  // A request that skipped the wait (nobody online, or outside office hours) shows the offline message.
  const skipped = h.busy_reason === "offline" || h.busy_reason === "after_hours";
  const text = skipped ? h.offline_message || T.offlineDefault : h.busy_message || T.busyDefault;
  card.append(el("p", "pv-card-text pv-busy-message", text));
  if (skipped) card.classList.add("pv-card-offline");

  if (h.lead_phone) {
    const thanks = appendIsolated(el("p", "pv-thanks"), T.phoneThanks, { phone: h.lead_phone });
    thanks.setAttribute("role", "status");
    card.append(thanks);
  } else {
    card.append(phoneForm(typedPhone));
  }

  const cont = el("button", "pv-btn pv-btn-secondary pv-btn-block", T.continueAi);
  cont.type = "button";
  cont.title = T.continueAiTitle;
  cont.addEventListener("click", () => {
    cont.disabled = true;
    sendAction({ type: "continue_with_ai" }, { onError: () => (cont.disabled = false) });
  });
  card.append(cont);
  return card;
}

function phoneForm(typedPhone) {
  const form = el("form", "pv-phone");
  form.noValidate = true;
  const label = el("label", "pv-label", T.phoneLabel);
  label.htmlFor = "pv-phone";
  const input = el("input", "pv-field");
  input.id = "pv-phone";
  input.type = "tel";
  input.dir = "ltr"; // a phone number reads left to right in every language
  input.name = "phone";
  input.autocomplete = "tel";
  input.inputMode = "tel";
  input.maxLength = 40;
  input.value = typedPhone;
  input.setAttribute("aria-describedby", "pv-phone-error");
  const submit = el("button", "pv-btn pv-btn-primary", T.phoneSubmit);
  submit.type = "submit";
  const error = el("p", "pv-field-error");
  error.id = "pv-phone-error";
  error.setAttribute("role", "alert");
  const row = el("div", "pv-phone-row");
  row.append(input, submit);
  form.append(label, row, error);
  ui.phoneInput = input;
  ui.phoneError = error;
  ui.phoneSubmit = submit;

  input.addEventListener("input", () => showPhoneError(""));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const phone = input.value.trim();
    if (!phone) {
      showPhoneError(T.phoneRequired);
      input.focus();
      return;
    }
    setPhoneBusy(true);
    sendAction(
      { type: "lead", phone, locale: navigator.language || "" },
      {
        onAck: () => setPhoneBusy(false),
        onError: (f) => {
          setPhoneBusy(false);
          if (f.code === "invalid_phone") {
            showPhoneError(typeof f.detail === "string" && f.detail ? f.detail : T.phoneInvalid);
            if (ui.phoneInput) ui.phoneInput.focus();
            return true; // shown inline, no global notice
          }
          return false;
        },
      },
    );
  });
  return form;
}

export function showPhoneError(text) {
  if (!ui.phoneError) return;
  ui.phoneError.textContent = text;
  if (text) ui.phoneInput.setAttribute("aria-invalid", "true");
  else ui.phoneInput.removeAttribute("aria-invalid");
}

export function setPhoneBusy(busy) {
  if (!ui.phoneSubmit) return;
  ui.phoneSubmit.disabled = busy;
  ui.phoneSubmit.textContent = busy ? T.phoneSending : T.phoneSubmit;
}

function resolvedCard() {
  const card = el("div", "pv-card pv-card-resolved");
  card.append(el("p", "pv-card-title pv-ok", T.resolved));
  const note = el("p", "pv-card-text", T.resolvedNote);
  note.id = "pv-resolved-note";
  const start = el("button", "pv-btn pv-btn-primary pv-btn-block", T.startNew);
  start.type = "button";
  start.addEventListener("click", () => {
    start.disabled = true;
    sendAction({ type: "new_conversation" }, { onError: () => (start.disabled = false) });
  });
  card.append(...resolvedExtras(), note, start);
  return card;
}
