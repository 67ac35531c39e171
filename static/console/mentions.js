// "Alice mentioned you": a notice on every console page when a teammate @mentions me in an internal
// note. The frame (``note.mention``) comes over the console socket in my own group
// (conversations/notes.py); the notice opens the conversation. Text only, never HTML.

import { consoleSocket } from "./console.js";
import { gettext, interpolate } from "./i18n.js";

const MAX_NOTICES = 4;

function region() {
  let node = document.querySelector("[data-notices]");
  if (!node) {
    node = document.createElement("div");
    node.className = "notices";
    node.setAttribute("aria-live", "assertive");
    node.dataset.notices = "";
    document.body.append(node);
  }
  return node;
}

function el(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function conversationUrl(frame) {
  // Only a path of this dashboard: the frame names a conversation, never somewhere else to go.
  const url = String(frame.url || "");
  return /^\/dashboard\/(conversations|notifications\/open)\/[0-9a-f-]{36}\/$/.test(url)
    ? url
    : `/dashboard/notifications/open/${encodeURIComponent(frame.conversation)}/`;
}

consoleSocket.addEventListener("note.mention", (event) => {
  const frame = event.detail;
  if (!frame.note || !frame.conversation) return;
  const here = document.querySelector("[data-conversation-page]")?.dataset.conversation === frame.conversation;
  const notice = el("div", "notice notice-mention");
  notice.setAttribute("role", "status");
  notice.dataset.mentionNotice = frame.note.id;
  notice.append(
    el("p", "notice-text", ""),
    el("p", "notice-excerpt", frame.note.text || ""),
  );
  const who = frame.note.author_name
    ? interpolate(gettext("%(name)s mentioned you"), { name: frame.note.author_name }, true)
    : gettext("A teammate mentioned you");
  // Translators: %(mention)s is "Alice mentioned you" (drawn in bold).
  const [before, after = ""] = gettext("%(mention)s in an internal note").split("%(mention)s");
  notice.firstChild.append(...[before, el("strong", "", who), after].filter((part) => part !== ""));
  const buttons = el("div", "notice-buttons");
  const link = el("a", "btn btn-primary", here ? gettext("Show note") : gettext("Open conversation"));
  link.href = conversationUrl(frame);
  const dismiss = el("button", "btn", gettext("Dismiss"));
  dismiss.type = "button";
  dismiss.addEventListener("click", () => notice.remove());
  if (here) {
    link.addEventListener("click", (click) => {
      click.preventDefault();
      notice.remove();
      document.querySelector(`[data-note-id="${CSS.escape(frame.note.id)}"]`)?.scrollIntoView({ block: "center" });
    });
  }
  buttons.append(link, dismiss);
  notice.append(buttons);
  const target = region();
  target.append(notice);
  while (target.querySelectorAll("[data-mention-notice]").length > MAX_NOTICES) target.querySelector("[data-mention-notice]").remove();
});
