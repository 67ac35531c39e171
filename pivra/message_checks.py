"""What a shipped catalogue must be (``python -m pivra.messages --check`` and tests/test_i18n_catalogues.py).

Every function returns a list of problems, one readable line each (empty: nothing to fix). A catalogue is
complete when it has exactly the messages makemessages extracts from the sources (none missing, none obsolete),
no fuzzy entry, no empty translation, the placeholders of its msgids in every translation, Pivra's
Plural-Forms for its language, and a committed ``.mo`` that says what its ``.po`` says.
"""

from __future__ import annotations

import ast
import gettext
import re
import subprocess
import tempfile
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pivra.messages import DOMAINS, MSGFMT, PLURAL_FORMS, locales

Key = tuple[str | None, str, str | None]  # (msgctxt, msgid, msgid_plural)


@dataclass
class Entry:
    line: int
    msgctxt: str | None = None
    msgid: str = ""
    msgid_plural: str | None = None
    msgstr: list[str] = field(default_factory=list)
    flags: set[str] = field(default_factory=set)
    obsolete: bool = False

    @property
    def key(self) -> Key:
        return (self.msgctxt, self.msgid, self.msgid_plural)

    @property
    def label(self) -> str:
        context = f" (context {self.msgctxt!r})" if self.msgctxt is not None else ""
        return f"{self.msgid!r}{context}"


_KEYWORD = re.compile(r'^(msgctxt|msgid_plural|msgid|msgstr(?:\[(\d+)\])?)\s+(".*")\s*$')


def parse_po(path: Path) -> list[Entry]:
    """The entries of a .po file, the header (msgid "") first. Enough of the format for gettext's own output."""
    entries: list[Entry] = []
    current: Entry | None = None
    target: tuple[str, int] | None = None  # the field a continuation line ("...") appends to

    def finish() -> None:
        nonlocal current, target
        if current is not None and (current.msgstr or current.msgid or current.msgctxt is not None):
            entries.append(current)
        current, target = None, None

    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        line = raw.strip()
        obsolete = line.startswith("#~")
        if obsolete:
            line = line[2:].strip()
        if not line:
            finish()
            continue
        if line.startswith("#"):
            if current is not None and target is not None:
                finish()  # a comment after the msgstr starts the next entry
            current = current or Entry(line=number)
            if line.startswith("#,"):
                current.flags.update(flag.strip() for flag in line[2:].split(",") if flag.strip())
            continue
        if current is None:
            current = Entry(line=number)
        current.obsolete = current.obsolete or obsolete
        match = _KEYWORD.match(line)
        if match:
            keyword, index, literal = match.groups()
            value = ast.literal_eval(literal)
            if keyword == "msgctxt":
                if target is not None and target[0] == "msgstr":
                    finish()
                    current = Entry(line=number, obsolete=obsolete)
                current.msgctxt, target = value, ("msgctxt", 0)
            elif keyword == "msgid":
                if target is not None and target[0] == "msgstr":
                    finish()
                    current = Entry(line=number, obsolete=obsolete)
                current.msgid, target = value, ("msgid", 0)
            elif keyword == "msgid_plural":
                current.msgid_plural, target = value, ("msgid_plural", 0)
            else:
                position = int(index) if index is not None else 0
                current.msgstr.extend([""] * (position + 1 - len(current.msgstr)))
                current.msgstr[position], target = value, ("msgstr", position)
        elif line.startswith('"') and target is not None:
            value = ast.literal_eval(line)
            name, position = target
            if name == "msgstr":
                current.msgstr[position] += value
            else:
                setattr(current, name, (getattr(current, name) or "") + value)
        else:
            raise ValueError(f"{path}:{number}: cannot read {raw!r}")
    finish()
    return entries


def header_fields(entries: list[Entry]) -> dict[str, str]:
    header = next((entry for entry in entries if entry.msgid == "" and entry.msgctxt is None), None)
    if header is None or not header.msgstr:
        return {}
    pairs = (line.split(":", 1) for line in header.msgstr[0].splitlines() if ":" in line)
    return {name.strip(): value.strip() for name, value in pairs}


def messages(entries: list[Entry]) -> list[Entry]:
    """The entries that are messages (not the header)."""
    return [entry for entry in entries if entry.key != (None, "", None)]


def catalogue_path(locale_dir: Path, locale: str, domain: str) -> Path:
    return locale_dir / locale / "LC_MESSAGES" / f"{domain}.po"


def _missing(path: Path) -> list[str]:
    return [] if path.is_file() else [f"{path}: missing (run `make messages`, then translate it)"]


def completeness_problems(*, committed: Path, extracted: Path, locale: str, domain: str) -> list[str]:
    """The committed catalogue has exactly the messages makemessages extracts today."""
    path = catalogue_path(committed, locale, domain)
    fresh = catalogue_path(extracted, locale, domain)
    if not fresh.is_file():
        # No marked message in this domain: a committed catalogue is then obsolete as a whole.
        return [f"{path}: no message to translate in this domain any more; delete it"] if path.is_file() else []
    if not path.is_file():
        return _missing(path)
    wanted = {entry.key: entry for entry in messages(parse_po(fresh)) if not entry.obsolete}
    have = {entry.key: entry for entry in messages(parse_po(path))}
    problems = [f"{path}: missing message {entry.label}" for key, entry in wanted.items() if key not in have]
    problems += [
        f"{path}:{entry.line}: obsolete message {entry.label} (no longer in the sources; `make messages` drops it)"
        for key, entry in have.items()
        if key not in wanted or entry.obsolete
    ]
    return problems


def translation_problems(path: Path) -> list[str]:
    """No fuzzy entry (the header included: msgfmt would drop it), no empty translation, every plural form."""
    if not path.is_file():
        return _missing(path)
    entries = parse_po(path)
    nplurals = _nplurals(header_fields(entries).get("Plural-Forms", ""))
    problems = []
    for entry in entries:
        where = f"{path}:{entry.line}"
        if "fuzzy" in entry.flags:
            problems.append(f"{where}: fuzzy {'header' if entry.msgid == '' else entry.label}")
        if entry.msgid == "" or entry.obsolete:
            continue
        if not entry.msgstr or any(not text.strip() for text in entry.msgstr):
            problems.append(f"{where}: untranslated {entry.label}")
        if entry.msgid_plural is not None and nplurals is not None and len(entry.msgstr) != nplurals:
            problems.append(f"{where}: {len(entry.msgstr)} plural forms for {entry.label}, the language has {nplurals}")
    return problems


# %(name)s and friends; positional %s/%d (only where xgettext saw a format string: "80% of" is text); {name}.
_NAMED = re.compile(r"%\((\w+)\)[#0 +-]*\d*(?:\.\d+)?[diouxXeEfFgGcrsa]")
_POSITIONAL = re.compile(r"%(?!\()[#0 +-]*\d*(?:\.\d+)?([diouxXeEfFgGcrsa%])")
_BRACE = re.compile(r"(?<!\{)\{(\w*)(?:[!:][^{}]*)?\}(?!\})")
_FORMAT_FLAGS = {"python-format", "c-format", "javascript-format"}


def _placeholders(text: str, positional: bool) -> tuple[Counter[str], list[str], Counter[str]]:
    named = Counter(_NAMED.findall(text))
    plain = [kind for kind in _POSITIONAL.findall(_NAMED.sub("", text)) if kind != "%"] if positional else []
    return named, plain, Counter(_BRACE.findall(text))


def placeholder_problems(path: Path) -> list[str]:
    """Every translation keeps its msgid's placeholders: the same %(name)s and {name} (a plural form may leave
    out the count, never add one), and exactly the same positional %s/%d in the same order."""
    if not path.is_file():
        return _missing(path)
    problems = []
    for entry in messages(parse_po(path)):
        positional = bool(entry.flags & _FORMAT_FLAGS)
        source_named, source_plain, source_brace = _placeholders(entry.msgid, positional)
        for index, text in enumerate(entry.msgstr):
            if not text:
                continue
            named, plain, brace = _placeholders(text, positional)
            where = f"{path}:{entry.line}: {entry.label}"
            if entry.msgid_plural is None:
                if set(named) != set(source_named) or set(brace) != set(source_brace):
                    problems.append(
                        f"{where}: placeholders {sorted(named | brace)} != {sorted(source_named | source_brace)}"
                    )
            else:
                plural_named, plural_plain, plural_brace = _placeholders(entry.msgid_plural, positional)
                allowed = set(source_named) | set(plural_named) | set(source_brace) | set(plural_brace)
                if not set(named) | set(brace) <= allowed:
                    problems.append(
                        f"{where}: form {index} has placeholders {sorted(set(named) | set(brace) - allowed)}"
                    )
                source_plain = plural_plain if index else source_plain or plural_plain
            if plain != source_plain:
                problems.append(f"{where}: positional placeholders {plain} != {source_plain}")
    return problems


def _nplurals(plural_forms: str) -> int | None:
    match = re.search(r"nplurals\s*=\s*(\d+)", plural_forms)
    return int(match.group(1)) if match else None


def _plural_rule(plural_forms: str) -> list[int] | None:
    """The form chosen for n = 0..200 (two headers are the same rule when these are equal)."""
    match = re.search(r"plural\s*=\s*(.+?);?\s*$", plural_forms)
    if not match:
        return None
    try:
        rule = gettext.c2py(match.group(1))
    except ValueError:
        return None
    return [rule(n) for n in range(201)]


def plural_forms_problems(path: Path, locale: str) -> list[str]:
    if not path.is_file():
        return _missing(path)
    header = header_fields(parse_po(path)).get("Plural-Forms", "")
    expected = PLURAL_FORMS[locale]
    if _nplurals(header) != _nplurals(expected) or _plural_rule(header) != _plural_rule(expected):
        return [f"{path}: Plural-Forms {header!r}, expected {expected!r}"]
    return []


def compiled_problems(path: Path) -> list[str]:
    """The committed .mo is what msgfmt compiles from the .po today (compared as catalogues, not bytes)."""
    if not path.is_file():
        return _missing(path)
    mo = path.with_suffix(".mo")
    with tempfile.TemporaryDirectory(prefix="pivra-mo-") as tmp:
        fresh = Path(tmp) / mo.name
        result = subprocess.run([*MSGFMT, "-o", str(fresh), str(path)], capture_output=True, text=True, check=False)
        if result.returncode:
            return [f"{path}: msgfmt --check-format fails:\n{result.stderr.strip()}"]
        if not mo.is_file():
            return [f"{mo}: missing (run `make messages`)"]
        with fresh.open("rb") as fresh_file, mo.open("rb") as mo_file:
            fresh_catalog = gettext.GNUTranslations(fresh_file)._catalog  # type: ignore[attr-defined]
            committed_catalog = gettext.GNUTranslations(mo_file)._catalog  # type: ignore[attr-defined]
    if fresh_catalog != committed_catalog:
        return [f"{mo}: out of date with {path.name} (run `make messages`)"]
    return []


def all_problems(*, committed: Path, extracted: Path) -> list[str]:
    problems = []
    for locale in locales():
        for domain in DOMAINS:
            path = catalogue_path(committed, locale, domain)
            problems += completeness_problems(committed=committed, extracted=extracted, locale=locale, domain=domain)
            if path.is_file():
                problems += translation_problems(path)
                problems += placeholder_problems(path)
                problems += plural_forms_problems(path, locale)
                problems += compiled_problems(path)
    return problems
