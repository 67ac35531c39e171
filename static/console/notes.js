// Internal notes on the conversation page: the composer's "Note" mode, and notes in the thread.
//
// A note is written for the team only: it goes to the console API / socket (``note``), never to the
// visitor, and shows in the thread after the event it was written after (``after_seq``), styled apart.
// Notes arrive live as ``note`` frames while the page watches the conversation, and are re-read
// after a reconnect. Everything is inserted as text, never HTML. @name mentions are resolved by the
// server against the workspace's members.

import { consoleSocket, localTime, postJson } from "./console.js";
import { gettext, interpolate, ngettext } from "./i18n.js";

const page = document.querySelector("[data-conversation-page]");
const conversationId = page.dataset.conversation;
const thread = page.querySelector("[data-thread]");
const composer = page.querySelector("[data-composer]");
const replyBox = composer.querySelector("#reply-box");
const noteBox = composer.querySelector("[data-note-box]");
const addButton = composer.querySelector("[data-add-note]");
const noteError = composer.querySelector("[data-note-error]");
const modeButtons = [...composer.querySelectorAll("[data-mode]")];
const api = `/api/console/conversations/${conversationId}/notes`;

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text; // text only: a note never becomes markup
  return node;
}

function newClientId() {
  if (window.crypto && typeof window.crypto.randomUUID === "function") return window.crypto.randomUUID();
  return `${Date.now()}-${Math.random().toString(16).slice(2)}`;
}

// --- the thread ------------------------------------------------------------------------------

function renderNote(note) {
  const item = el("li", "ev ev-note is-new");
  item.dataset.noteId = note.id;
  item.dataset.afterSeq = String(note.after_seq);
  const meta = el("div", "ev-meta");
  const time = el("time", "", localTime(note.created_at));
  time.setAttribute("datetime", note.created_at);
  time.dataset.local = "";
  meta.append(el("span", "ev-who", note.author_name || gettext("Agent")), " ", time);
  const bubble = el("div", "ev-bubble");
  bubble.append(el("span", "note-label", gettext("Internal note · only your team sees this")), el("span", "note-text", note.text));
  item.append(meta, bubble);
  return item;
}

/** Insert a note once, after every event up to its ``after_seq`` (and after earlier notes there). */
function addNote(note) {
  if (thread.querySelector(`[data-note-id="${CSS.escape(note.id)}"]`)) return false;
  thread.querySelector("[data-thread-empty]")?.remove();
  const stick = thread.scrollHeight - thread.scrollTop - thread.clientHeight < 120;
  const later = [...thread.children].find((node) => node.dataset.seq && Number(node.dataset.seq) > note.after_seq);
  thread.insertBefore(renderNote(note), later || null);
  if (stick) thread.scrollTop = thread.scrollHeight;
  return true;
}

async function reloadNotes() {
  try {
    const response = await fetch(api, { credentials: "same-origin", cache: "no-store", headers: { Accept: "application/json" } });
    if (response.ok && !response.redirected) for (const note of await response.json()) addNote(note);
  } catch {
    /* offline: the next reconnect tries again */
  }
}

// --- the composer's Note mode ----------------------------------------------------------------

let mode = "reply";

function setMode(next) {
  mode = next;
  composer.classList.toggle("is-note", mode === "note");
  for (const button of modeButtons) button.setAttribute("aria-pressed", String(button.dataset.mode === mode));
  showNoteError("");
  (mode === "note" ? noteBox : replyBox).focus();
}

function showNoteError(message) {
  noteError.textContent = message;
  noteError.hidden = !message;
}

for (const button of modeButtons) button.addEventListener("click", () => setMode(button.dataset.mode));

// A failed send keeps its client id while the text is unchanged, so a retry is stored once.
let pending = null;
let sending = false;

async function sendNote() {
  const text = noteBox.value.trim();
  if (!text || sending) return;
  if (!pending || pending.text !== text) pending = { text, clientId: newClientId() };
  sending = true;
  addButton.disabled = true;
  showNoteError("");
  const body = { client_id: pending.clientId, text };
  try {
    let ack = null;
    if (consoleSocket.open) {
      try {
        ack = await consoleSocket.command({ type: "note", conversation_id: conversationId, ...body });
      } catch (error) {
        if (error.refused) throw error;
      }
    }
    if (!ack) ack = await postJson(api, body);
    addNote(ack.note);
    pending = null;
    if (noteBox.value.trim() === text) noteBox.value = "";
    const ambiguous = Array.isArray(ack.ambiguous_mentions) ? ack.ambiguous_mentions : [];
    if (ambiguous.length) {
      // Two teammates share that first name: the server told neither of them.
      const names = ambiguous.map((name) => `@${name}`).join(", ");
      const message = ngettext(
        "Note added, but %(names)s matches more than one teammate, so nobody was notified — use @username.",
        "Note added, but %(names)s match more than one teammate, so nobody was notified — use @username.",
        ambiguous.length,
      );
      showNoteError(interpolate(message, { names }, true));
    }
    thread.scrollTop = thread.scrollHeight; // after the message: the composer may have grown
  } catch (error) {
    showNoteError(error.message);
  } finally {
    sending = false;
    addButton.disabled = false;
    noteBox.focus();
  }
}

addButton.addEventListener("click", sendNote);
noteBox.addEventListener("keydown", (event) => {
  if (event.key === "Enter" && !event.shiftKey && !event.isComposing) {
    event.preventDefault();
    sendNote();
  }
});

// --- live ------------------------------------------------------------------------------------

consoleSocket.addEventListener("note", (event) => {
  if (event.detail.conversation === conversationId && event.detail.note) addNote(event.detail.note);
});
consoleSocket.addEventListener("watching", (event) => {
  // (Re)joined: a note written while the socket was down shows up now.
  if (event.detail.conversation === conversationId) reloadNotes();
});
consoleSocket.addEventListener("ended", () => {
  noteBox.disabled = true;
  addButton.disabled = true;
});
