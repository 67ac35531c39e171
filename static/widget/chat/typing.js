/*
 * The typing indicator and the streamed AI draft bubble. Both are transient and not announced
 * (the final event is what lands in the log), and each has a timer so a lost "off" frame can never
 * leave it on screen.
 */

import { BOT_NAME, T, t } from "./config.js";
import { mutate } from "./layout.js";
import { S, sameConversation, ui, viewState } from "./state.js";
import { el } from "./util.js";

export function buildTyping() {
  const row = el("div", "pv-row pv-ai pv-typing");
  row.hidden = true;
  // A person's typing is shown with their name ("Alice is typing…"); the label below says it to screen readers.
  ui.typingName = el("div", "pv-typing-name");
  ui.typingName.setAttribute("aria-hidden", "true");
  ui.typingName.hidden = true;
  row.append(ui.typingName);
  const bubble = el("div", "pv-bubble pv-typing-bubble");
  ui.typingLabel = el("span", "pv-sr");
  bubble.append(ui.typingLabel);
  for (let i = 0; i < 3; i++) bubble.append(el("span", "pv-dot"));
  row.append(bubble);
  return row;
}

export function renderTyping() {
  const showAi = S.typing.ai && !S.draft && viewState() === "ai";
  const showAgent = S.typing.agent;
  const on = showAi || showAgent;
  const name = showAgent ? S.typingName || (S.state && S.state.handoff && S.state.handoff.agent) || T.teamMember : BOT_NAME;
  mutate(() => {
    ui.typing.hidden = !on;
    ui.typing.classList.toggle("pv-agent-typing", showAgent && !showAi);
    ui.typingLabel.textContent = on ? t("typing", { name }) : "";
    ui.typingName.hidden = !(showAgent && !showAi);
    ui.typingName.textContent = ui.typingName.hidden ? "" : t("typingVisible", { name });
  });
  // A lost "typing off" must never leave the dots running forever.
  clearTimeout(S.typingTimer);
  if (on) S.typingTimer = setTimeout(clearTyping, 60000);
}

export function clearTyping() {
  S.typing.ai = false;
  S.typing.agent = false;
  S.typingName = "";
  clearTimeout(S.typingTimer);
  clearTimeout(S.typingAgentTimer);
  ui.typing.hidden = true;
  ui.typingLabel.textContent = "";
  ui.typingName.hidden = true;
  ui.typingName.textContent = "";
}

// The live chat changed hands (released, transferred, taken over): the previous agent's dots and name
// must not stay on screen, nor be shown under the next agent's name.
export function clearAgentTyping() {
  if (!S.typing.agent && !S.typingName) return;
  S.typing.agent = false;
  S.typingName = "";
  clearTimeout(S.typingAgentTimer);
  renderTyping();
}

export function onTyping(frame) {
  if (!sameConversation(frame)) return;
  const who = frame.author === "agent" ? "agent" : "ai";
  if (who === "ai" && viewState() !== "ai") return; // the AI is silent during a handoff
  S.typing[who] = Boolean(frame.on);
  if (who === "agent") {
    if (typeof frame.agent === "string" && frame.agent) S.typingName = frame.agent.slice(0, 150);
    // The agent's page repeats "on" every 2 s while typing: a lost "off" never leaves the dots long.
    clearTimeout(S.typingAgentTimer);
    if (frame.on) {
      S.typingAgentTimer = setTimeout(() => {
        S.typing.agent = false;
        renderTyping();
      }, 10000);
    }
  }
  renderTyping();
}

export function onDelta(frame) {
  if (!sameConversation(frame) || viewState() !== "ai" || typeof frame.text !== "string") return;
  mutate(() => {
    if (!S.draft || S.draft.replyTo !== frame.reply_to) {
      dropDraft();
      const row = el("div", "pv-row pv-ai pv-draft");
      row.setAttribute("aria-hidden", "true"); // the final event is what gets announced
      const bubble = el("div", "pv-bubble");
      const text = document.createTextNode("");
      bubble.append(text, el("span", "pv-caret"));
      row.append(bubble);
      ui.draftSlot.append(row);
      S.draft = { replyTo: frame.reply_to, row, text, timer: 0 };
    }
    S.draft.text.appendData(frame.text);
  });
  clearTimeout(S.draft.timer);
  S.draft.timer = setTimeout(dropDraft, 60000);
  renderTyping();
}

export function dropDraft() {
  if (!S.draft) return;
  clearTimeout(S.draft.timer);
  S.draft.row.remove();
  S.draft = null;
}
