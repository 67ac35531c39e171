/*
 * The resolved card's two extras (README "Satisfaction and transcripts"): "How did we do?" (👍/👎 or
 * 1–5 stars and an optional comment, sent once as a `rate` action) and "Email me the transcript" (a
 * `transcript` action). Each block redraws itself in place; what the visitor typed and picked is
 * kept here per conversation, so a rebuild of the whole panel keeps it too.
 */

import { CONFIG, T, t, tn } from "./config.js";
import { sendAction } from "./protocol.js";
import { S } from "./state.js";
import { appendIsolated, el, icon } from "./util.js";

const COMMENT_MAX = 1000;
// Drawn, not emoji: a page without an emoji font still shows them.
const THUMB_UP = ["M7 10v11", "M7 10l4-8a3 3 0 0 1 3 3v4h5.5a2 2 0 0 1 2 2.3l-1.3 8A2 2 0 0 1 18.2 21H7", "M7 21H4a1 1 0 0 1-1-1v-9a1 1 0 0 1 1-1h3"];
const THUMB_DOWN = ["M17 14V3", "M17 14l-4 8a3 3 0 0 1-3-3v-4H4.5a2 2 0 0 1-2-2.3l1.3-8A2 2 0 0 1 5.8 3H17", "M17 3h3a1 1 0 0 1 1 1v9a1 1 0 0 1-1 1h-3"];
const STAR = ["M12 2.8l2.8 5.8 6.3.9-4.6 4.4 1.1 6.3L12 17.2l-5.6 3 1.1-6.3-4.6-4.4 6.3-.9z"];
const blank = () => ({ conv: null, score: null, comment: "", rated: false, busy: false, error: "", email: "", open: false, sending: false, sentTo: "", mailError: "" });
const local = blank();

function current() {
  if (local.conv !== S.convId) Object.assign(local, blank(), { conv: S.convId });
  return local;
}

// The panel rebuilds when this changes (panels.js): a state that says the survey was answered.
export function surveyKey() {
  const s = S.state && S.state.survey;
  return s ? `${s.scale}:${s.score ?? ""}` : "";
}

export function resolvedExtras() {
  const state = current();
  const survey = S.state && S.state.survey;
  if (survey && survey.score != null) state.rated = true;
  const blocks = [];
  if (survey) {
    const box = el("section", "pv-survey");
    box.setAttribute("aria-labelledby", "pv-survey-q");
    drawSurvey(box, survey.scale);
    blocks.push(box);
  }
  if (CONFIG.transcriptEmails !== false) {
    const mail = el("div", "pv-transcript");
    drawTranscript(mail);
    blocks.push(mail);
  }
  return blocks;
}

/* ------------------------------------------------------------------ rating */

function drawSurvey(box, scale) {
  const state = current();
  if (state.rated) {
    const thanks = el("p", "pv-thanks pv-survey-thanks", T.ratingThanks);
    thanks.setAttribute("role", "status");
    thanks.tabIndex = -1;
    box.replaceChildren(thanks);
    return thanks;
  }
  const head = el("div", "pv-survey-head");
  const question = el("p", "pv-card-title pv-survey-q", T.ratingQuestion);
  question.id = "pv-survey-q";
  const choices = el("div", `pv-survey-scale pv-survey-${scale === "five" ? "stars" : "thumbs"}`);
  choices.setAttribute("role", "group");
  choices.setAttribute("aria-labelledby", "pv-survey-q");
  const options = scale === "five" ? [1, 2, 3, 4, 5].map((n) => [n, STAR, tn("ratingStars", n)]) : [[5, THUMB_UP, T.ratingGood], [1, THUMB_DOWN, T.ratingBad]];
  for (const [score, face, label] of options) {
    const pick = el("button", `pv-survey-pick${score === 1 && scale !== "five" ? " pv-down" : ""}`);
    pick.append(icon(face, 20));
    pick.type = "button";
    pick.dataset.score = String(score);
    pick.setAttribute("aria-label", label);
    pick.title = label;
    const on = state.score != null && (scale === "five" ? score <= state.score : score === state.score);
    pick.setAttribute("aria-pressed", String(state.score === score));
    if (on) pick.classList.add("pv-on");
    pick.disabled = state.busy;
    pick.addEventListener("click", () => {
      state.score = score;
      state.error = "";
      drawSurvey(box, scale);
      const comment = box.querySelector("textarea");
      if (comment) comment.focus();
    });
    choices.append(pick);
  }
  head.append(question, choices);
  box.replaceChildren(head);
  if (state.score == null) return null;

  const form = el("form", "pv-survey-form");
  form.noValidate = true;
  const label = el("label", "pv-label", T.ratingCommentLabel);
  label.htmlFor = "pv-survey-comment";
  const comment = el("textarea", "pv-field pv-survey-comment");
  comment.id = "pv-survey-comment";
  comment.rows = 2;
  comment.maxLength = COMMENT_MAX;
  comment.value = state.comment;
  comment.placeholder = T.ratingCommentPlaceholder;
  comment.addEventListener("input", () => (state.comment = comment.value));
  const error = el("p", "pv-field-error", state.error);
  error.setAttribute("role", "alert");
  const send = el("button", "pv-btn pv-btn-primary pv-btn-block", state.busy ? T.sending : T.ratingSend);
  send.type = "submit";
  send.disabled = state.busy;
  form.append(label, comment, error, send);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (state.busy) return;
    state.busy = true;
    state.error = "";
    drawSurvey(box, scale);
    sendAction(
      { type: "rate", conversation: state.conv, score: state.score, comment: state.comment.trim() },
      {
        onAck: () => {
          state.busy = false;
          state.rated = true;
          const thanks = drawSurvey(box, scale);
          if (thanks) thanks.focus();
        },
        onError: (f) => {
          state.busy = false;
          if (f.code === "already_rated") state.rated = true;
          else state.error = typeof f.detail === "string" && f.detail ? f.detail : T.genericError;
          drawSurvey(box, scale);
          return true; // shown inline
        },
      },
    );
  });
  box.append(form);
  return null;
}

/* ------------------------------------------------------------------ transcript by email */

function drawTranscript(box) {
  const state = current();
  if (state.sentTo) {
    const done = appendIsolated(el("p", "pv-thanks pv-transcript-sent"), T.transcriptSent, { email: state.sentTo });
    done.setAttribute("role", "status");
    done.tabIndex = -1;
    box.replaceChildren(done);
    return done;
  }
  if (!state.open) {
    const ask = el("button", "pv-link pv-transcript-ask", T.transcriptAsk);
    ask.type = "button";
    ask.addEventListener("click", () => {
      state.open = true;
      drawTranscript(box);
      box.querySelector("input").focus();
    });
    box.replaceChildren(ask);
    return null;
  }
  const form = el("form", "pv-transcript-form");
  form.noValidate = true;
  const label = el("label", "pv-label", T.transcriptLabel);
  label.htmlFor = "pv-transcript-email";
  const input = el("input", "pv-field");
  input.id = "pv-transcript-email";
  input.type = "email";
  input.dir = "ltr";
  input.name = "email";
  input.autocomplete = "email";
  input.maxLength = 254;
  input.value = state.email;
  input.setAttribute("aria-describedby", "pv-transcript-error");
  if (state.mailError) input.setAttribute("aria-invalid", "true");
  input.addEventListener("input", () => {
    state.email = input.value;
    if (state.mailError) {
      state.mailError = error.textContent = "";
      input.removeAttribute("aria-invalid");
    }
  });
  const send = el("button", "pv-btn pv-btn-primary", state.sending ? T.sending : T.transcriptSend);
  send.type = "submit";
  send.disabled = state.sending;
  const row = el("div", "pv-phone-row");
  row.append(input, send);
  const error = el("p", "pv-field-error", state.mailError);
  error.id = "pv-transcript-error";
  error.setAttribute("role", "alert");
  form.append(label, row, error);
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const email = input.value.trim();
    if (!email) {
      state.mailError = T.transcriptRequired;
      drawTranscript(box).focus();
      return;
    }
    state.sending = true;
    state.mailError = "";
    drawTranscript(box);
    sendAction(
      { type: "transcript", conversation: state.conv, email },
      {
        onAck: (f) => {
          state.sending = false;
          state.sentTo = (f && typeof f.email === "string" && f.email) || email;
          const done = drawTranscript(box);
          if (done) done.focus();
        },
        onError: (f) => {
          state.sending = false;
          state.mailError = typeof f.detail === "string" && f.detail ? f.detail : T.genericError;
          drawTranscript(box).focus();
          return true; // shown inline under the field
        },
      },
    );
  });
  box.replaceChildren(form);
  return input;
}
