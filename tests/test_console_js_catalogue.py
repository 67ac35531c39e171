"""The console scripts' catalogue (/dashboard/jsi18n/<lang>/, pivra/console/i18n_views.py): Django's JavaScript
catalogue of the ``djangojs`` domain for a language of settings.LANGUAGES, cacheable (the language is in the URL),
404 for anything else, and loaded by every console page in the page's language before the console modules."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client
from django.urls import reverse

from tests.factories import Personas
from tests.handoff_helpers import enable_handoff, new_visitor


def _url(code: str) -> str:
    return reverse("dashboard:jsi18n", args=[code])


@pytest.mark.parametrize("code", ["fr", "ar", "en", "pt-br"])
def test_the_catalogue_is_javascript_and_cacheable(client: Client, code: str) -> None:
    response = client.get(_url(code))
    assert response.status_code == 200
    assert response["Content-Type"].startswith("text/javascript")
    assert response["X-Content-Type-Options"] == "nosniff"
    cache_control = {part.strip() for part in response["Cache-Control"].split(",")}
    assert "public" in cache_control
    assert any(re.fullmatch(r"max-age=\d+", part) and int(part.split("=")[1]) > 0 for part in cache_control)
    assert re.fullmatch(r'"[0-9a-f]{32}"', response["ETag"])
    body = response.content.decode()
    assert "django.gettext" in body and "django.ngettext" in body and "django.interpolate" in body
    # Not a login page, not a redirect: it holds no data, and the console loads it before sign-in pages too.
    assert "csrfmiddlewaretoken" not in body


def test_an_unchanged_catalogue_answers_304(client: Client) -> None:
    first = client.get(_url("fr"))
    again = client.get(_url("fr"), HTTP_IF_NONE_MATCH=first["ETag"])
    assert again.status_code == 304
    assert again.content == b""
    assert again["ETag"] == first["ETag"]
    assert "public" in again["Cache-Control"]


def test_the_language_comes_from_the_url_only(client: Client) -> None:
    """The same URL gives the same answer whatever the browser or session says (a shared cache may keep it)."""
    plain = client.get(_url("fr"))
    german_browser = client.get(_url("fr"), HTTP_ACCEPT_LANGUAGE="de")
    assert plain.content == german_browser.content
    assert plain["ETag"] == german_browser["ETag"]


@pytest.mark.parametrize("code", ["xx", "zz-zz", "fr_FR", "FR", "en-us", "de-de", "..", "%3Cscript%3E", "ar;x"])
def test_an_unknown_language_is_404_and_not_reflected(client: Client, code: str) -> None:
    response = client.get(f"/dashboard/jsi18n/{code}/")
    assert response.status_code == 404
    assert "<script>" not in response.content.decode()
    assert "text/javascript" not in response.get("Content-Type", "")


def test_only_reads_are_allowed(client: Client) -> None:
    assert client.post(_url("fr")).status_code == 405
    assert client.head(_url("fr")).status_code == 200


def test_every_configured_language_has_a_catalogue_url(client: Client) -> None:
    for code, _name in settings.LANGUAGES:
        assert client.get(_url(code)).status_code == 200, code


def test_the_catalogue_holds_the_console_strings_when_compiled(client: Client) -> None:
    """With a compiled French djangojs catalogue, its console strings are in the French answer (and English has
    none: English is the source language)."""
    mo = settings.LOCALE_PATHS[0] / "fr" / "LC_MESSAGES" / "djangojs.mo"
    english = client.get(_url("en")).content.decode()
    assert '"Sound on"' not in english
    if not mo.exists():
        pytest.skip("no compiled French djangojs catalogue yet (make messages)")
    french = client.get(_url("fr")).content.decode()
    assert '"Sound on"' in french or '"Connection lost' in french


def test_a_compiled_catalogue_is_served_with_its_plural_rule(client: Client, tmp_path: Path, settings) -> None:
    """Pivra's own catalogues (LOCALE_PATHS) make the answer: a French djangojs.mo put there is what /fr/ serves."""
    if shutil.which("msgfmt") is None:
        pytest.skip("msgfmt (gettext) is not installed")
    messages = tmp_path / "fr" / "LC_MESSAGES"
    messages.mkdir(parents=True)
    (messages / "djangojs.po").write_text(
        'msgid ""\nmsgstr ""\n"Content-Type: text/plain; charset=UTF-8\\n"\n'
        '"Plural-Forms: nplurals=2; plural=(n > 1);\\n"\n\n'
        'msgid "Sound on"\nmsgstr "Son activé"\n\n'
        'msgid "%(n)s unclaimed handoff"\nmsgid_plural "%(n)s unclaimed handoffs"\n'
        'msgstr[0] "%(n)s demande en attente"\nmsgstr[1] "%(n)s demandes en attente"\n',
        encoding="utf-8",
    )
    subprocess.run(["msgfmt", "-o", str(messages / "djangojs.mo"), str(messages / "djangojs.po")], check=True)
    settings.LOCALE_PATHS = [tmp_path]
    response = client.get(_url("fr"))
    body = response.content.decode()
    assert "Son activ" in body
    assert "demandes en attente" in body
    assert "(n > 1)" in body  # French plurals: 0 and 1 are singular
    assert response.has_header("Last-Modified")
    assert client.get(_url("de")).content.decode().count("Son activ") == 0


# --- console pages load it, in the page's language, before the console modules --------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(("accept", "code"), [("fr-FR,fr;q=0.9", "fr"), ("ar", "ar"), ("", "en")])
def test_console_pages_load_the_catalogue_of_their_language(personas: Personas, accept: str, code: str) -> None:
    client = Client(HTTP_ACCEPT_LANGUAGE=accept) if accept else Client()
    client.force_login(personas.owner)
    html = client.get(reverse("dashboard:conversations")).content.decode()
    tag = f'<script src="{_url(code)}"></script>'
    assert html.count(tag) == 1
    first_module = html.index('<script type="module"')
    assert html.index(tag) < first_module  # a classic script, run before every module reads window.django
    assert f'<html lang="{code}"' in html  # the same language as the page's own words


@pytest.mark.django_db
def test_the_conversation_page_loads_it_before_its_own_scripts(personas: Personas) -> None:
    enable_handoff(personas.chatbot)
    _visitor, conversation = new_visitor(personas.chatbot)
    client = Client()
    client.force_login(personas.owner)
    html = client.get(reverse("dashboard:conversation", args=[conversation.public_id])).content.decode()
    assert html.index(f'src="{_url("en")}"') < html.index("console/conversation.js")
