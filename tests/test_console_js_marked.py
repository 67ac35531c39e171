"""Every human-visible text of the console scripts (static/console/*.js) goes through gettext/ngettext/pgettext.

A small JavaScript lexer (strings, template literals, comments, regular expressions) walks each file and looks at
every string literal that reads like words ("Claim", "Visitor is typing…", "released by the agent"). Such a
literal fails the test unless it is an argument of a gettext call, or sits where nothing is shown to a person:
a class name, a selector, a data/role attribute, a comparison with a key or a code, a console.* log, an HTTP
header, an object key. Sinks that show text are checked first: ``textContent``/``innerText``/``title``/
``placeholder``/``alt`` assignments, ``setAttribute("aria-label"|"title"|"placeholder"|"alt", …)``, the page
helpers ``el(tag, class, TEXT)``, ``text(tag, class, TEXT)``, ``button(TEXT, …)``, ``.append(…)``,
``showError(…)``…; a literal anywhere else that reads like a sentence fails as well (a label table, a constant).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

import pytest
from django.conf import settings

CONSOLE_JS = Path(settings.BASE_DIR) / "static" / "console"
# The service worker has no catalogue: its texts come in the push payload, worded by the server.
NOT_SCANNED = {"notifications-sw.js", "i18n.js"}

GETTEXT = {"gettext", "ngettext", "pgettext", "npgettext"}
# Calls whose string arguments are never shown to a person.
QUIET_CALLS = {
    "querySelector",
    "querySelectorAll",
    "closest",
    "getElementById",
    "createElement",
    "addEventListener",
    "removeEventListener",
    "dispatchEvent",
    "CustomEvent",
    "Event",
    "fetch",
    "open",
    "setRequestHeader",
    "getItem",
    "setItem",
    "removeItem",
    "stored",
    "store",
    "startsWith",
    "endsWith",
    "includes",
    "split",
    "replace",
    "join",
    "test",
    "matches",
    "toggle",
    "add",
    "remove",
    "contains",
    "removeAttribute",
    "getAttribute",
    "hasAttribute",
    "insertAdjacentElement",
    "register",
    "getRegistration",
    "matchAll",
    "postMessage",
    "DateTimeFormat",
    "NumberFormat",
    "padStart",
    "atob",
    "Set",
    "Map",
    "URL",
    "append_",
}
CONSOLE_LOG = {"log", "warn", "error", "info", "debug"}
# Attributes whose value a person reads (or hears).
VISIBLE_ATTRIBUTES = {"aria-label", "title", "placeholder", "alt", "aria-description", "aria-roledescription"}
VISIBLE_PROPERTIES = {"textContent", "innerText", "title", "placeholder", "alt", "innerHTML", "outerHTML"}
QUIET_PROPERTIES = {
    "className",
    "type",
    "id",
    "rel",
    "target",
    "href",
    "src",
    "download",
    "name",
    "role",
    "key",
    "value",
}
# helper name -> the positional arguments that are shown (None: all of them)
TEXT_HELPERS: dict[str, set[int] | None] = {
    "el": {2},
    "text": {2},
    "button": {0},
    "append": None,
    "prepend": None,
    "before": None,
    "after": None,
    "replaceChildren": None,
    "showError": None,
    "showStatus": {0},
    "showNoteError": None,
    "warn": None,
    "alert": None,
    "confirm": None,
    "prompt": None,
    "Notification": {0},
    "showNotification": {0},
}
# Literals that read like words but are not translated, each with its reason.
ALLOWED = {
    "use strict": "a directive",
    "PDF": "a file type on an aria-hidden icon",
    "Pivra": "the product's name",
    "The live connection is down.": "internal: the command is then sent over HTTP, never shown",
    "The live connection dropped.": "internal: the command is then sent over HTTP, never shown",
    "The live connection did not answer.": "internal: the command is then sent over HTTP, never shown",
    "saving the subscription answered ": "internal: logged with console.warn only",
    "HTTP ": "a status code (HTTP 500), the same in every language",
}


@dataclass
class Token:
    kind: str  # "ident", "string", "punct"
    text: str  # for strings: the literal's text, ${…} parts removed
    line: int


def _lex(source: str) -> list[Token]:
    tokens: list[Token] = []
    i, n, line = 0, len(source), 1
    inner: list[tuple[int, str]] = []  # the ${…} expressions of template literals, scanned on their own

    def regex_allowed() -> bool:
        if not tokens:
            return True
        last = tokens[-1]
        if last.kind == "ident":
            return last.text in {"return", "typeof", "case", "in", "of", "delete", "void", "throw", "new", "else"}
        if last.kind == "string":
            return False
        return last.text not in {")", "]", "}"}

    while i < n:
        c = source[i]
        if c == "\n":
            line += 1
            i += 1
        elif c.isspace():
            i += 1
        elif source.startswith("//", i):
            i = source.find("\n", i)
            i = n if i < 0 else i
        elif source.startswith("/*", i):
            end = source.index("*/", i + 2) + 2
            line += source.count("\n", i, end)
            i = end
        elif c in "\"'":
            j, out = i + 1, []
            while source[j] != c:
                if source[j] == "\\":
                    out.append(source[j : j + 2])
                    j += 2
                else:
                    out.append(source[j])
                    j += 1
            tokens.append(Token("string", "".join(out), line))
            i = j + 1
        elif c == "`":
            j, out, depth = i + 1, [], 0
            while depth or source[j] != "`":
                if source[j] == "\\":
                    j += 2
                    continue
                if not depth and source.startswith("${", j):
                    depth, j, begin = 1, j + 2, j + 2
                    out.append("\x00")  # an expression: not words
                    continue
                if depth:
                    depth += {"{": 1, "}": -1}.get(source[j], 0)
                    if not depth:
                        inner.append((line + source.count("\n", i, j), source[begin:j]))
                else:
                    out.append(source[j])
                j += 1
            tokens.append(Token("string", "".join(out), line))
            line += source.count("\n", i, j)
            i = j + 1
        elif c == "/" and regex_allowed():
            j, in_class = i + 1, False
            while in_class or source[j] != "/":
                if source[j] == "\\":
                    j += 1
                elif source[j] == "[":
                    in_class = True
                elif source[j] == "]":
                    in_class = False
                j += 1
            j += 1
            while j < n and source[j].isalpha():
                j += 1
            tokens.append(Token("punct", "regex", line))
            i = j
        elif c.isalnum() or c in "_$":
            j = i
            while j < n and (source[j].isalnum() or source[j] in "_$"):
                j += 1
            tokens.append(Token("ident", source[i:j], line))
            i = j
        else:
            three, two = source[i : i + 3], source[i : i + 2]
            op = (
                three
                if three in {"===", "!==", "..."}
                else two
                if two in {"==", "!=", "=>", "&&", "||", "??", "?."}
                else c
            )
            tokens.append(Token("punct", op, line))
            i += len(op)
    for at, expression in inner:
        tokens.append(Token("inner", expression, at))
    return tokens


def _reads_like_words(text: str) -> bool:
    words = text.replace("\x00", " ")
    if not re.search(r"[A-Za-z]{2}", words):
        return False
    if text.startswith(("/", "./", "[", ".", "#")) and " " not in text.strip():
        return False  # a path, a URL or a selector
    if re.fullmatch(r"[\w.:/#\[\]=\"'^$*\x00-]*", text.strip()):  # a code, key, path, selector or class name
        return bool(re.match(r"[A-Z][a-z]", words.strip()))  # … unless it is a capitalised word ("Claim")
    return True


def _allowed(text: str) -> bool:
    plain = text.replace("\x00", "").strip()
    return any(plain == allowed.strip() or (allowed.endswith(" ") and plain.startswith(allowed)) for allowed in ALLOWED)


@dataclass
class Frame:
    callee: str  # the called name before "(", or "" for a grouping paren / bracket / brace
    receiver: str  # the identifier before ".callee" (console.warn → "console")
    arg: int  # the argument index so far
    opener: str


def _unmarked(source: str) -> list[tuple[int, str]]:
    tokens = _lex(source)
    found: list[tuple[int, str]] = []
    stack: list[Frame] = []
    for index, token in enumerate(tokens):
        if token.kind == "inner":  # a template literal's ${…}: its own literals are checked the same way
            found += [(token.line, text) for _line, text in _unmarked(token.text)]
            continue
        prev = tokens[index - 1] if index else Token("punct", "", 0)
        nxt = tokens[index + 1] if index + 1 < len(tokens) else Token("punct", "", 0)
        if token.kind == "punct":
            if token.text in {"(", "[", "{"}:
                callee = receiver = ""
                if token.text == "(" and prev.kind == "ident":
                    callee = prev.text
                    if index >= 3 and tokens[index - 2].text in {".", "?."}:
                        receiver = tokens[index - 3].text
                stack.append(Frame(callee, receiver, 0, token.text))
            elif token.text in {")", "]", "}"} and stack:
                stack.pop()
            elif token.text == "," and stack:
                stack[-1].arg += 1
            continue
        if token.kind != "string" or not _reads_like_words(token.text) or _allowed(token.text):
            continue
        if nxt.text == ":" and prev.text in {"{", ","} and stack and stack[-1].opener == "{":
            continue  # an object key (not the first branch of a ternary)
        if prev.text in {"===", "!==", "==", "!="} or nxt.text in {"===", "!==", "==", "!="}:
            continue  # compared with a key or a code
        if prev.text in {"import", "from"} or nxt.text in {"from", "in"}:
            continue
        # The nearest enclosing call decides.
        call = next((frame for frame in reversed(stack) if frame.opener == "("), None)
        if call and call.callee in GETTEXT:
            continue
        if call and (call.receiver == "console" and call.callee in CONSOLE_LOG):
            continue
        if call and call.callee == "setAttribute":
            attribute = _argument_string(tokens, index, stack)
            if call.arg == 0 or attribute not in VISIBLE_ATTRIBUTES:
                continue
        elif call and call.callee in TEXT_HELPERS:
            shown = TEXT_HELPERS[call.callee]
            if shown is not None and call.arg not in shown:
                continue
        elif (call and call.callee in QUIET_CALLS and not _assigned_to(tokens, index, VISIBLE_PROPERTIES)) or (
            _assigned_to(tokens, index, QUIET_PROPERTIES) or _in_dataset_assignment(tokens, index)
        ):
            continue
        found.append((token.line, token.text.replace("\x00", "${…}")))
    return found


def _statement_start(tokens: list[Token], index: int) -> int:
    depth = 0
    for j in range(index - 1, -1, -1):
        text = tokens[j].text if tokens[j].kind == "punct" else ""
        if text in {")", "]", "}"}:
            depth += 1
        elif text in {"(", "[", "{"}:
            if depth == 0:
                return j + 1
            depth -= 1
        elif depth == 0 and text in {";", ","}:
            return j + 1
    return 0


def _assigned_to(tokens: list[Token], index: int, properties: set[str]) -> bool:
    """The literal is (part of) the right side of ``x.<property> =``."""
    start = _statement_start(tokens, index)
    for j in range(start, index):
        if tokens[j].text == "=" and tokens[j].kind == "punct":
            return j >= 2 and tokens[j - 2].text == "." and tokens[j - 1].text in properties
    return False


def _in_dataset_assignment(tokens: list[Token], index: int) -> bool:
    start = _statement_start(tokens, index)
    names = [t.text for t in tokens[start:index]]
    return "dataset" in names and "=" in names


def _argument_string(tokens: list[Token], index: int, stack: list[Frame]) -> str:
    """The first argument of the enclosing setAttribute call, when it is a literal."""
    for j in range(index - 1, -1, -1):
        if tokens[j].text == "(" and tokens[j - 1].text == "setAttribute":
            first = tokens[j + 1]
            return first.text if first.kind == "string" else ""
    return ""


def _console_scripts() -> list[Path]:
    return sorted(p for p in CONSOLE_JS.glob("*.js") if p.name not in NOT_SCANNED)


@pytest.mark.parametrize("path", _console_scripts(), ids=lambda p: p.name)
def test_console_script_has_no_unmarked_text(path: Path) -> None:
    unmarked = _unmarked(path.read_text(encoding="utf-8"))
    assert not unmarked, f"{path.name}: wrap these in gettext()/ngettext() (static/console/i18n.js):\n" + "\n".join(
        f"  line {line}: {text!r}" for line, text in unmarked
    )


# --- the scanner itself --------------------------------------------------------------------------------------

CAUGHT = [
    'node.textContent = "Seen";',
    'label.textContent = on ? "Sound on" : "Sound off";',
    "done.textContent = `Transcript queued for ${body.email}: it goes out in a moment.`;",
    "link.title = `Open ${name} full size`;",
    'box.setAttribute("aria-label", "Desktop notifications");',
    'node.setAttribute("title", "The visitor has seen this message");',
    'input.setAttribute("placeholder", "Type a reply");',
    'const accept = el("button", "btn btn-primary", "Accept");',
    'actions.append(button("Not now", "btn btn-quiet", close));',
    'line.append(dots, "Visitor is typing…");',
    'showError("This conversation is no longer available to you.");',
    'const LABELS = { "handoff.claimed": "Claimed" };',
    'const REASONS = { released: "released by the agent" };',
    'const TEXT = "Connection lost — reconnecting…";',
    'item.append(`${TEXT} `, link); link.textContent = "reload this page.";',
    'window.alert("Saved");',
    'label.textContent = `Desktop notifications: ${on ? "On" : "Off"}`;',
    'claimButton.textContent = c.offered_to_me ? "Accept" : "Claim";',
]
QUIET = [
    'node.textContent = gettext("Seen");',
    'label.textContent = on ? gettext("Sound on") : gettext("Sound off");',
    'done.textContent = interpolate(gettext("Queued for %(email)s."), { email }, true);',
    'box.setAttribute("aria-label", gettext("Desktop notifications"));',
    'box.setAttribute("role", "region"); box.setAttribute("aria-live", "assertive");',
    'const x = el("section", "notice notice-offer");',
    'node.className = "notice notice-mention";',
    'if (event.key === "Enter" || event.key === "ArrowDown") go();',
    'const r = fetch(url, { headers: { "Content-Type": "application/json", Accept: "application/json" } });',
    'console.warn("Pivra: Web Push is not available in this browser:", error);',
    'document.querySelector("[data-transfer-dialog] .Foo");',
    "const t = `${a} · ${b}`;",
    "const m = /^Handoff (\\d+)$/.test(s);",
    'import { gettext } from "./i18n.js";',
    'const n = ngettext("%(n)s chat", "%(n)s chats", n);',
    'const w = pgettext("duration", "%(s)ss");',
    'node.dataset.mode = "Note";',
]


@pytest.mark.parametrize("snippet", CAUGHT)
def test_the_scan_catches_unmarked_text(snippet: str) -> None:
    assert _unmarked(snippet), snippet


@pytest.mark.parametrize("snippet", QUIET)
def test_the_scan_lets_marked_or_invisible_literals_pass(snippet: str) -> None:
    assert not _unmarked(snippet), _unmarked(snippet)
