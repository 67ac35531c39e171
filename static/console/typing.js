// Typing, both ways, on the conversation page. Frames only: nothing here is ever stored.
//
// The agent's typing goes to the visitor's widget ("Alice is typing…") over the page's console socket:
// "on" at most every 2 s while keys are pressed, "off" on send, on blur and after 5 s without a key.
// The server relays it only for the agent holding the live chat and drops everyone else's quietly.
//
// The visitor's typing arrives as a "typing" frame of this conversation: "Visitor is typing…", and with
// the chatbot's typing preview on, the text they have not sent yet, labelled as such. Text only.

import { consoleSocket } from "./console.js";
import { gettext } from "./i18n.js";

const page = document.querySelector("[data-conversation-page]");
const conversationId = page.dataset.conversation;
const composer = page.querySelector("[data-composer]");
const textarea = composer.querySelector("textarea");

// --- the agent → the widget -------------------------------------------------------------------

const SEND_EVERY_MS = 2000;
const SILENCE_MS = 5000;
const typing = { on: false, sentAt: 0, silence: 0 };

function sendTyping(on) {
  const sent = consoleSocket.send({ type: "typing", conversation_id: conversationId, on });
  typing.on = on && sent;
  typing.sentAt = on && sent ? Date.now() : 0;
}

function stopTyping() {
  clearTimeout(typing.silence);
  if (typing.on) sendTyping(false);
}

textarea.addEventListener("input", () => {
  if (textarea.disabled || !textarea.value.trim()) {
    stopTyping();
    return;
  }
  if (!typing.on || Date.now() - typing.sentAt >= SEND_EVERY_MS) sendTyping(true);
  clearTimeout(typing.silence);
  typing.silence = setTimeout(stopTyping, SILENCE_MS);
});
textarea.addEventListener("blur", stopTyping);
composer.addEventListener("submit", stopTyping);
textarea.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) stopTyping(); // conversation.js sends
});

// --- the visitor → this page ------------------------------------------------------------------

// The widget repeats "on" while the visitor types: without one for this long, they stopped.
const VISITOR_QUIET_MS = 8000;

const box = document.createElement("div");
box.className = "visitor-typing";
box.dataset.visitorTyping = "";
box.hidden = true;
const line = document.createElement("p");
line.className = "visitor-typing-line";
line.setAttribute("aria-live", "polite");
const dots = document.createElement("span");
dots.className = "typing-dots";
dots.setAttribute("aria-hidden", "true");
dots.append(...[0, 1, 2].map(() => document.createElement("i")));
line.append(dots, gettext("Visitor is typing…"));
const preview = document.createElement("div");
preview.className = "typing-preview";
preview.dataset.typingPreview = "";
preview.hidden = true;
const previewLabel = document.createElement("span");
previewLabel.className = "typing-preview-label";
previewLabel.textContent = gettext("Live preview · not sent yet");
const previewText = document.createElement("p");
previewText.className = "typing-preview-text";
preview.append(previewLabel, previewText);
box.append(line, preview);
composer.before(box);

let quiet = 0;

function showVisitorTyping(on, text) {
  clearTimeout(quiet);
  box.hidden = !on;
  preview.hidden = !on || !text;
  previewText.textContent = on ? text : ""; // text only: what a visitor types never becomes markup
  if (on) quiet = setTimeout(() => showVisitorTyping(false, ""), VISITOR_QUIET_MS);
}

consoleSocket.addEventListener("typing", (event) => {
  const frame = event.detail;
  if (frame.conversation !== conversationId || frame.author !== "visitor") return;
  showVisitorTyping(Boolean(frame.on), typeof frame.text === "string" ? frame.text : "");
});
consoleSocket.addEventListener("event", (event) => {
  const frame = event.detail;
  if (frame.conversation === conversationId && frame.author === "visitor") showVisitorTyping(false, ""); // sent
});
consoleSocket.addEventListener("status", (event) => {
  if (!event.detail.connected) {
    showVisitorTyping(false, "");
    typing.on = false;
  }
});
