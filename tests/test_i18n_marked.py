"""Every word a person reads in a template is marked for translation (issue 17).

For each template (templates/** and <app>/templates/**, e-mails included), everything that is marked or not
text is blanked out — Django comments, ``{% comment %}`` blocks, HTML comments, ``<script>``/``<style>``
bodies, ``{% blocktranslate %}`` blocks, every other ``{% %}`` and ``{{ }}`` — then the HTML tags go, except
the attributes people read (title, placeholder, aria-label, alt, the value of buttons, a description's
content), which are checked like text. Any word left is unmarked: the failure lists it as file:line.
Line numbers survive because blanking keeps the newlines.
"""

from __future__ import annotations

import html
import re
from pathlib import Path

import pytest
from django.conf import settings

ROOT = Path(settings.BASE_DIR)
TEMPLATES = sorted(
    path
    for pattern in ("templates/**/*", "*/templates/**/*")
    for path in ROOT.glob(pattern)
    if path.is_file() and path.suffix in {".html", ".txt"} and not path.is_relative_to(ROOT / ".venv")
)
# Words that are the same in every language. Add one only with the reason next to it.
ALLOWED = {
    "Pivra",  # the product's name
}

WORD = re.compile(r"[^\W\d_]+")  # a run of letters, any script
TAG = re.compile(r"<(/?)([a-zA-Z][\w:-]*|![a-zA-Z]+)((?:[^>\"']|\"[^\"]*\"|'[^']*')*)>")
ATTRIBUTE = re.compile(r"([\w:.-]+)\s*=\s*(?:\"([^\"]*)\"|'([^']*)'|([^\s\"'>]+))")
READ_ATTRIBUTES = {"title", "placeholder", "aria-label", "aria-description", "aria-placeholder", "alt", "label"}
BUTTON_INPUT_TYPES = {"submit", "button", "reset"}
READ_META = {"description", "og:title", "og:description", "twitter:title", "twitter:description"}
NOT_TEXT = [
    re.compile(r"\{#.*?#\}", re.S),
    re.compile(r"\{%\s*comment\b.*?%\}.*?\{%\s*endcomment\s*%\}", re.S),
    re.compile(r"<!--.*?-->", re.S),
    re.compile(r"<(script|style)\b[^>]*>.*?</\1\s*>", re.S | re.I),
    re.compile(r"\{%\s*blocktrans(?:late)?\b.*?%\}.*?\{%\s*endblocktrans(?:late)?\s*%\}", re.S),
]
TEMPLATE_TAG = re.compile(r"\{%.*?%\}|\{\{.*?\}\}", re.S)
# Literals a template shows although they sit inside a tag: {{ x|default:"None" }}, {% firstof a "Nobody" %}.
SHOWN_LITERAL = re.compile(
    r"\|\s*(?:default|default_if_none|yesno|pluralize)\s*:\s*(\"[^\"]*\"|'[^']*')|"
    r"\{%\s*firstof\b[^%]*?\s(\"[^\"]*\"|'[^']*')"
)


def _blank(match: re.Match[str]) -> str:
    """The matched text with everything but its newlines replaced by spaces (line numbers stay right)."""
    return re.sub(r"[^\n]", " ", match.group(0))


def _line_of(text: str, offset: int) -> int:
    return text.count("\n", 0, offset) + 1


def _words(text: str) -> list[str]:
    return [word for word in WORD.findall(html.unescape(text)) if word not in ALLOWED]


def _read_attributes(tag: str, name: str, attributes: str) -> list[tuple[int, str]]:
    """(offset in ``attributes``, value) of each attribute of the tag that people read."""
    found = {m.group(1).lower(): m for m in ATTRIBUTE.finditer(attributes)}
    wanted = set(READ_ATTRIBUTES)
    input_type = (found["type"].group(2) or found["type"].group(3) or "") if "type" in found else ""
    # An <input> button shows its value; a <button>'s value is data (its content is what people read).
    if name == "input" and input_type.lower() in BUTTON_INPUT_TYPES:
        wanted.add("value")
    meta_name = found.get("name") or found.get("property")
    if name == "meta" and meta_name and (meta_name.group(2) or meta_name.group(3) or "").lower() in READ_META:
        wanted.add("content")
    return [
        (m.start(), next(group for group in m.groups()[1:] if group is not None))
        for key, m in found.items()
        if key in wanted
    ]


def unmarked_texts(path: Path) -> list[tuple[int, str]]:
    """(line, text) of every unmarked word group of a template."""
    source = path.read_text(encoding="utf-8")
    found: list[tuple[int, str]] = []
    for match in SHOWN_LITERAL.finditer(source):
        literal = match.group(1) or match.group(2)
        if _words(literal[1:-1]):
            found.append((_line_of(source, match.start()), literal))
    text = source
    for pattern in NOT_TEXT:
        text = pattern.sub(_blank, text)
    text = TEMPLATE_TAG.sub(_blank, text)
    for tag in TAG.finditer(text):
        closing, name, attributes = tag.groups()
        if closing:
            continue
        for offset, value in _read_attributes(tag.group(0), name.lower(), attributes):
            if _words(value):
                found.append((_line_of(text, tag.start(3) + offset), f"{name} attribute: {value.strip()}"))
    text = TAG.sub(_blank, text)
    for number, line in enumerate(text.splitlines(), start=1):
        if _words(line):
            found.append((number, " ".join(line.split())))
    return sorted(found)


@pytest.mark.parametrize("path", TEMPLATES, ids=[str(path.relative_to(ROOT)) for path in TEMPLATES])
def test_template_text_is_marked_for_translation(path: Path) -> None:
    found = unmarked_texts(path)
    where = path.relative_to(ROOT)
    assert not found, "unmarked text (wrap it in {% translate %} / {% blocktranslate trimmed %}):\n" + "\n".join(
        f"{where}:{line}: {text}" for line, text in found
    )


def test_templates_are_found() -> None:
    names = {str(path.relative_to(ROOT)) for path in TEMPLATES}
    assert {"templates/console/base.html", "templates/widget/frame.html"} <= names
    assert any(name.startswith("actions/templates/") and name.endswith(".txt") for name in names)


# The detector itself, on small templates.


def _unmarked(tmp_path: Path, source: str) -> list[tuple[int, str]]:
    path = tmp_path / "sample.html"
    path.write_text(source, encoding="utf-8")
    return unmarked_texts(path)


def test_marked_text_and_non_text_pass(tmp_path: Path) -> None:
    source = """{% load i18n %}<!DOCTYPE html>
<html lang="{{ LANGUAGE_CODE }}"><head><meta name="viewport" content="width=device-width">
<title>{% translate "Conversations" %} · Pivra</title>
<style>body { font-family: sans-serif; }</style><script>const label = "Not checked";</script></head>
{# a note #}{% comment %}
Draft text
{% endcomment %}<!-- a comment -->
<button type="submit" title="{% translate "Close" %}" class="btn primary" data-kind="close">&times;</button>
<input type="text" name="q" placeholder="{% translate "Search" %}" value="{{ q }}">
{% blocktranslate trimmed with name=user.name %}
  Hello {{ name }}
{% endblocktranslate %}
{% if user.is_staff %}{{ user.email|default:_("Nobody") }}{% endif %} &nbsp; 42 — 3/4
<dialog><form method="dialog"><button value="cancel">{% translate "Cancel" %}</button></form></dialog>
{% firstof a|date:"SHORT_DATE_FORMAT" b _("Never") %}
</html>"""
    assert _unmarked(tmp_path, source) == []


def test_unmarked_text_and_attributes_fail(tmp_path: Path) -> None:
    source = """{% load i18n %}<p>
  Welcome back
</p>
<img src="x.png" alt="Team photo">
<input type="submit" value="Save">
<meta name="description" content="Live chat">
{{ agent|default:"Unassigned" }}
<p>Caf&eacute; {% translate "ok" %}</p>
{% firstof agent.name "Nobody" %}"""
    assert _unmarked(tmp_path, source) == [
        (2, "Welcome back"),
        (4, "img attribute: Team photo"),
        (5, "input attribute: Save"),
        (6, "meta attribute: Live chat"),
        (7, '"Unassigned"'),
        (8, "Caf&eacute;"),
        (9, '"Nobody"'),
    ]
