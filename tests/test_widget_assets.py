"""The chat frame loads the widget as native ES modules and plain stylesheets, with no build step."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from tests.factories import Personas

pytestmark = pytest.mark.django_db
STATIC = Path(settings.BASE_DIR) / "static"
IMPORT = re.compile(r'^import [^;]+ from "(\.{1,2}/[^"]+\.js)";$', re.M)


def _frame(client: Client, personas: Personas) -> tuple[str, str]:
    """The frame's HTML and its Content-Security-Policy."""
    response = client.get(f"/widget/frame/{personas.chatbot.public_key}/", {"origin": "http://testserver"})
    assert response.status_code == 200
    return response.content.decode(), response["Content-Security-Policy"]


def _static_path(href: str) -> Path:
    assert href.startswith(settings.STATIC_URL), href
    return (STATIC / href.removeprefix(settings.STATIC_URL)).resolve()


def _module_graph(entry: Path) -> set[Path]:
    """Every module reachable from the entry through its static imports (the entry excluded)."""
    seen: set[Path] = set()
    todo = [entry.resolve()]
    while todo:
        module = todo.pop()
        for spec in IMPORT.findall(module.read_text()):
            target = (module.parent / spec).resolve()
            assert target.is_file(), f"{module.name} imports a missing {spec}"
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def test_the_frame_preloads_exactly_the_modules_the_widget_imports(client: Client, personas: Personas) -> None:
    html, _ = _frame(client, personas)
    entry = re.findall(r'<script type="module" src="([^"]+)"></script>', html)
    assert [_static_path(src) for src in entry] == [STATIC / "widget" / "chat.js"]
    preloaded = {_static_path(href) for href in re.findall(r'<link rel="modulepreload" href="([^"]+)">', html)}
    assert preloaded == _module_graph(STATIC / "widget" / "chat.js")


def test_the_frame_policy_runs_scripts_only_from_our_origin(client: Client, personas: Personas) -> None:
    _, policy = _frame(client, personas)
    directives = {d.strip().split(" ", 1)[0]: d.strip().split()[1:] for d in policy.split(";") if d.strip()}
    # With no script-src of its own, scripts (module imports and preloads too) fall back to default-src.
    assert directives.get("script-src", directives["default-src"]) == ["'self'"]


def test_every_widget_module_and_stylesheet_is_served_with_its_type(client: Client, personas: Personas) -> None:
    html, _ = _frame(client, personas)
    scripts = re.findall(r'<(?:script type="module" src|link rel="modulepreload" href)="([^"]+)"', html)
    styles = re.findall(r'<link rel="stylesheet" href="([^"]+)">', html)
    assert len(scripts) > 1 and len(styles) > 1
    for href, kind in [*((s, "text/javascript") for s in scripts), *((s, "text/css") for s in styles)]:
        response = client.get(href)
        assert response.status_code == 200, href
        # Browsers refuse to run a module served with a non-JavaScript type.
        assert response["Content-Type"].split(";")[0] == kind, href
        response.close()
