// Canned replies in the composer: "/" at the start of the reply box opens a list of the workspace's
// saved replies, filtered by what follows the slash (shortcut or title). ↑/↓ move, Enter (or Tab)
// inserts, Esc closes; a click works too. The server fills each reply's placeholders for this
// conversation (GET /api/console/conversations/{id}/canned-replies); the page only inserts the text
// as the textarea's value — never as HTML. A placeholder with no value here (``missing``: no visitor
// name known…) leaves a gap: the composer says so and puts the caret there. A reply longer than the
// reply box takes is not inserted (the box says why). While the list is open, Enter and Tab belong to
// it: with no match they do nothing (Esc closes the list, then Enter sends).

import { formatNumber, gettext, interpolate, ngettext } from "./i18n.js";

const page = document.querySelector("[data-conversation-page]");
const composer = page?.querySelector("[data-composer]");
const textarea = composer?.querySelector("#reply-box");
const MAX_SHOWN = 8;

let replies = null; // the last list the server sent (re-read at each opening: lead data can change)
let loadError = ""; // why the last read failed (the server's detail), shown in place of the list
let loading = null;
let matches = [];
let active = 0;
let open = false;

const box = document.createElement("div");
box.className = "canned-picker";
box.hidden = true;
box.dataset.cannedPicker = "";
const heading = document.createElement("div");
heading.className = "canned-picker-head";
heading.textContent = gettext("Canned replies · ↑↓ to choose, Enter to insert, Esc to close");
const list = document.createElement("ul");
list.id = "canned-picker-list";
list.setAttribute("role", "listbox");
list.setAttribute("aria-label", gettext("Canned replies"));
box.append(heading, list);

// Said after an insert: a gap where a placeholder had no value, or a reply too long for the box.
const warning = document.createElement("div");
warning.className = "canned-warning";
warning.hidden = true;
warning.dataset.cannedWarning = "";
warning.setAttribute("role", "status");

const MISSING_LABELS = {
  "visitor.name": gettext("visitor name"),
  "visitor.email": gettext("visitor email"),
  "visitor.mobile": gettext("visitor mobile number"),
  "agent.name": gettext("agent name"),
  "workspace.name": gettext("workspace name"),
};

/** A count as the agent's language writes it, without grouping (as typed limits are read: 5000, not 5,000). */
function plain(n) {
  return formatNumber(n, { useGrouping: false });
}

function warn(message) {
  warning.textContent = message; // text only
  warning.hidden = !message;
}

function missingWarning(missing) {
  const labels = missing.map(
    (name) => MISSING_LABELS[name] || interpolate(gettext("value for %(placeholder)s"), { placeholder: `{{${name}}}` }, true),
  );
  const list = labels.length > 1 ? orList(labels) : labels[0];
  return interpolate(gettext("No %(values)s known — check the text before sending."), { values: list }, true);
}

/** "a, b or c" in the agent's language (Intl.ListFormat would add an Oxford comma to the English). */
function orList(labels) {
  const last = labels[labels.length - 1];
  // Translators: the end of a list of missing values, e.g. "visitor name, visitor email or agent name".
  return interpolate(gettext("%(first)s or %(last)s"), { first: labels.slice(0, -1).join(gettext(", ")), last }, true);
}

async function errorDetail(response) {
  try {
    const body = await response.json();
    if (body && typeof body.detail === "string") return body.detail;
  } catch {
    /* not JSON: the status says enough */
  }
  return interpolate(gettext("Could not load the canned replies (HTTP %(status)s)."), { status: response.status }, true);
}

/** The text after "/" up to the caret while the reply box starts with "/" and the caret is in that word. */
function query() {
  const value = textarea.value;
  const caret = textarea.selectionStart ?? value.length;
  if (!value.startsWith("/") || caret < 1) return null;
  const word = value.slice(1, caret);
  return /\s/.test(word) ? null : word.toLowerCase();
}

async function load() {
  if (loading) return loading;
  loading = (async () => {
    try {
      const response = await fetch(`/api/console/conversations/${page.dataset.conversation}/canned-replies`, {
        credentials: "same-origin",
        cache: "no-store",
        headers: { Accept: "application/json" },
      });
      if (response.ok && !response.redirected) {
        replies = await response.json();
        loadError = "";
      } else {
        replies = [];
        loadError = response.redirected
          ? gettext("Your session ended. Reload the page and sign in again.")
          : await errorDetail(response);
      }
    } catch {
      // Offline: a list read before stays usable; with none, say so rather than "Loading…" forever.
      if (replies === null || loadError) {
        replies = [];
        loadError = gettext("Could not load the canned replies. Check your connection and try again.");
      }
    } finally {
      loading = null;
    }
  })();
  return loading;
}

function text(tag, className, value) {
  const node = document.createElement(tag);
  node.className = className;
  node.textContent = value; // text only: a reply never becomes markup
  return node;
}

function render(filter) {
  const all = replies || [];
  matches = all
    .filter((r) => r.shortcut.includes(filter) || r.title.toLowerCase().includes(filter))
    .sort((a, b) => Number(!a.shortcut.startsWith(filter)) - Number(!b.shortcut.startsWith(filter)))
    .slice(0, MAX_SHOWN);
  active = Math.min(active, Math.max(0, matches.length - 1));
  list.replaceChildren();
  if (!matches.length) {
    const message =
      replies === null
        ? gettext("Loading…")
        : loadError ||
          (all.length
            ? interpolate(gettext("No reply matches %(shortcut)s"), { shortcut: `/${filter}` }, true)
            : gettext("No canned replies yet. Owners and admins add them under Canned replies."));
    const empty = text("li", loadError ? "canned-picker-empty canned-picker-error" : "canned-picker-empty", message);
    list.append(empty);
  }
  matches.forEach((reply, index) => {
    const item = document.createElement("li");
    item.id = `canned-option-${reply.id}`;
    item.className = "canned-option";
    item.setAttribute("role", "option");
    item.setAttribute("aria-selected", String(index === active));
    item.dataset.shortcut = reply.shortcut;
    const head = document.createElement("div");
    head.append(text("code", "canned-option-shortcut", `/${reply.shortcut}`));
    if (reply.title) head.append(" ", text("span", "canned-option-title", reply.title));
    item.append(head, text("div", "canned-option-text", reply.text));
    item.addEventListener("mousedown", (event) => {
      event.preventDefault(); // keep the focus in the textarea
      insert(reply);
    });
    list.append(item);
  });
  if (matches[active]) textarea.setAttribute("aria-activedescendant", `canned-option-${matches[active].id}`);
  else textarea.removeAttribute("aria-activedescendant");
  list.querySelector('[aria-selected="true"]')?.scrollIntoView({ block: "nearest" });
}

function show(filter) {
  if (!open) {
    open = true;
    active = 0;
    box.hidden = false;
    textarea.setAttribute("aria-expanded", "true");
    load().then(() => open && update());
  }
  render(filter);
}

function close() {
  if (!open) return;
  open = false;
  box.hidden = true;
  textarea.setAttribute("aria-expanded", "false");
  textarea.removeAttribute("aria-activedescendant");
}

function update() {
  const filter = query();
  if (filter === null || textarea.disabled) close();
  else show(filter);
}

function insert(reply) {
  const caret = textarea.selectionStart ?? textarea.value.length;
  const rest = textarea.value.slice(caret).replace(/^\S*/, ""); // the rest of the "/word" goes too
  const limit = textarea.maxLength; // -1 when the box has none
  if (limit > 0 && reply.text.length + rest.length > limit) {
    // The list stays open (Enter stays the list's, the "/word" is not sent by accident); Esc closes it.
    const length = reply.text.length;
    const message = ngettext(
      "%(shortcut)s is %(length)s characters once filled in; a reply can be at most %(limit)s. Nothing was inserted: shorten the canned reply or write this one yourself.",
      "%(shortcut)s is %(length)s characters once filled in; a reply can be at most %(limit)s. Nothing was inserted: shorten the canned reply or write this one yourself.",
      length,
    );
    warn(interpolate(message, { shortcut: `/${reply.shortcut}`, length: plain(length), limit: plain(limit) }, true));
    textarea.focus();
    return;
  }
  textarea.value = reply.text + rest;
  const missing = Array.isArray(reply.missing) ? reply.missing : [];
  const gap = Number.isInteger(reply.gap_at) ? Math.min(reply.gap_at, reply.text.length) : reply.text.length;
  const at = missing.length ? gap : reply.text.length; // the caret waits where the empty value went
  textarea.setSelectionRange(at, at);
  close();
  textarea.focus();
  textarea.dispatchEvent(new Event("input", { bubbles: true })); // whoever follows the typing hears it
  warn(missing.length ? missingWarning(missing) : "");
}

if (textarea) {
  composer.classList.add("has-canned");
  composer.append(box);
  textarea.insertAdjacentElement("afterend", warning);
  textarea.setAttribute("role", "combobox");
  textarea.setAttribute("aria-autocomplete", "list");
  textarea.setAttribute("aria-controls", list.id);
  textarea.setAttribute("aria-expanded", "false");
  textarea.addEventListener("input", (event) => {
    if (event.isTrusted) warn(""); // the agent edits: the warning has been read (ours is not trusted)
    update();
  });
  composer.addEventListener("submit", () => warn(""));
  textarea.addEventListener("click", update);
  textarea.addEventListener("blur", close);
  // Capture on the form: these keys must reach the list before the reply box's own handler (where
  // Enter sends the reply).
  composer.addEventListener(
    "keydown",
    (event) => {
      if (event.target !== textarea || event.isComposing) return;
      if (!open) {
        if (event.key === "Enter" && !event.shiftKey) warn(""); // the reply is being sent: said and done
        return;
      }
      const move = { ArrowDown: 1, ArrowUp: -1 }[event.key];
      if (move && matches.length) {
        active = (active + move + matches.length) % matches.length;
        render(query() ?? "");
      } else if ((event.key === "Enter" || event.key === "Tab") && !event.shiftKey) {
        // The list owns these keys while open: with no match, "/xyz" is never sent by accident.
        if (matches[active]) insert(matches[active]);
      } else if (event.key === "Escape") {
        close();
      } else {
        return;
      }
      event.preventDefault();
      event.stopPropagation();
    },
    true,
  );
  textarea.addEventListener("keyup", (event) => {
    if (event.key === "ArrowLeft" || event.key === "ArrowRight" || event.key === "Home" || event.key === "End") update();
  });
}
