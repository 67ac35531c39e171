"""``python -m pivra.messages [--check]``: the translation catalogues of a checkout (``make messages``).

Without arguments: extract every marked string into ``locale/<lang>/LC_MESSAGES/django.po`` (Python and
templates) and ``djangojs.po`` (the console's JavaScript, static/console/) for every language of
settings.LANGUAGES but English (the source language), then compile the ``.mo`` files. The ``.mo`` files are
committed, so the run command and an installed copy need no gettext. ``--check`` changes nothing: it
extracts into a temporary copy of the sources and reports what the committed catalogues miss or get wrong
(the checks of tests/test_i18n_catalogues.py), exiting 1 when there is anything to fix.

Locations are kept per file only (``#: path``, no line numbers) and lines are not wrapped, so a diff of a
catalogue shows the messages that changed, not every message that moved.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

DOMAINS = ("django", "djangojs")
# Never scanned for messages: the virtualenv, runtime data, test and bench code, build output.
IGNORE = [".*", ".venv", "var", "test-artifacts", "tests", "bench", "build", "node_modules", "*.egg-info", "locale"]
# The widget's strings are Python-side (pivra/widget/strings.py): its JavaScript has none to extract.
IGNORE_JS = [*IGNORE, "static/widget"]
# Format strings and plural counts are checked; the header's translator fields are the translators' business.
MSGFMT = ["msgfmt", "--check-format", "--check-domain"]
MAKEMESSAGES_OPTIONS = {"no_obsolete": True, "add_location": "file", "no_wrap": True}

# The Plural-Forms header each catalogue carries: Django's own catalogues' rules (makemessages copies them into
# a new catalogue; Spanish has a third form, for millions). pivra/widget/strings.py maps the browser's
# Intl.PluralRules categories onto these forms: change both together.
PLURAL_FORMS = {
    "fr": "nplurals=2; plural=(n > 1);",
    "de": "nplurals=2; plural=(n != 1);",
    "es": "nplurals=3; plural=n == 1 ? 0 : n != 0 && n % 1000000 == 0 ? 1 : 2;",
    "pt_BR": "nplurals=2; plural=(n > 1);",
    "it": "nplurals=2; plural=(n != 1);",
    "nl": "nplurals=2; plural=(n != 1);",
    "ar": (
        "nplurals=6; plural=n==0 ? 0 : n==1 ? 1 : n==2 ? 2 : "
        "n%100>=3 && n%100<=10 ? 3 : n%100>=11 && n%100<=99 ? 4 : 5;"
    ),
}


def locales() -> list[str]:
    """The locale directories (``fr``, ``pt_BR``…): every language of settings.LANGUAGES but the source one."""
    from django.conf import settings
    from django.utils.translation import to_locale

    return [to_locale(code) for code, _name in settings.LANGUAGES if code != settings.LANGUAGE_CODE]


def project_root() -> Path:
    from django.conf import settings

    root = Path(settings.BASE_DIR)
    if not (root / "manage.py").is_file():
        raise SystemExit("pivra.messages works on a checkout (manage.py next to pivra/), not on an installed copy")
    return root


@contextmanager
def _cwd(path: Path) -> Iterator[None]:
    before = Path.cwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(before)


def _fix_header(po: Path, locale: str) -> None:
    """A catalogue makemessages just created has a fuzzy header with placeholders: fill in the language and
    Pivra's Plural-Forms (kept up to date on every run) and drop the header's fuzzy flag."""
    text = po.read_text(encoding="utf-8")
    header, sep, entries = text.partition("\n\n")
    lines = [line for line in header.split("\n") if line != "#, fuzzy"]
    header = "\n".join(lines)
    header = re.sub(r'"Language:.*?\\n"', f'"Language: {locale}\\\\n"', header, count=1, flags=re.DOTALL)
    header = re.sub(
        r'"Plural-Forms:.*?\\n"', f'"Plural-Forms: {PLURAL_FORMS[locale]}\\\\n"', header, count=1, flags=re.DOTALL
    )
    # A new catalogue has the two plural forms of the template; give every plural message the language's count.
    nplurals = int(re.search(r"nplurals=(\d+)", PLURAL_FORMS[locale]).group(1))  # type: ignore[union-attr]
    if nplurals > 2:
        more = "".join(f'msgstr[{index}] ""\n' for index in range(2, nplurals))
        entries = re.sub(r'^(msgstr\[1\] ""\n)(?!msgstr\[2\])', lambda m: m.group(1) + more, entries, flags=re.M)
    po.write_text(header + sep + entries, encoding="utf-8")


def extract(root: Path, verbosity: int = 1) -> None:
    """makemessages for every language and both domains, in ``root`` (the checkout or a copy of it)."""
    from django.core.management import call_command

    langs = locales()
    paths = [root / "locale" / locale / "LC_MESSAGES" / f"{domain}.po" for locale in langs for domain in DOMAINS]
    before = {path: path.read_text(encoding="utf-8") for path in paths if path.is_file()}
    with _cwd(root):
        (root / "locale").mkdir(exist_ok=True)
        for domain, ignore in (("django", IGNORE), ("djangojs", IGNORE_JS)):
            call_command(
                "makemessages",
                locale=langs,
                domain=domain,
                ignore_patterns=ignore,
                verbosity=verbosity,
                **MAKEMESSAGES_OPTIONS,
            )
    for path in paths:
        if path.is_file():
            _fix_header(path, path.parent.parent.name)
            # makemessages stamps a new POT-Creation-Date on every run: keep a catalogue whose messages did not
            # change byte for byte, so that `make messages` on unchanged sources changes nothing.
            if path in before and _undated(path.read_text(encoding="utf-8")) == _undated(before[path]):
                path.write_text(before[path], encoding="utf-8")


def _undated(text: str) -> str:
    return re.sub(r'"POT-Creation-Date:.*?\\n"', "", text, count=1)


def compile_all(root: Path, verbosity: int = 1) -> None:
    """msgfmt every catalogue of ``root/locale`` (format strings and plural counts checked)."""
    for locale in locales():
        for domain in DOMAINS:
            po = root / "locale" / locale / "LC_MESSAGES" / f"{domain}.po"
            if not po.is_file():
                continue
            if verbosity:
                print(f"compiling {po.relative_to(root)}")
            subprocess.run([*MSGFMT, "-o", str(po.with_suffix(".mo")), str(po)], check=True)


def _copy_ignore(directory: str, names: list[str]) -> set[str]:
    import fnmatch

    return {name for name in names for pattern in IGNORE if fnmatch.fnmatchcase(name, pattern)}


def extract_into_copy(destination: Path) -> Path:
    """Copy the checkout's sources (what makemessages would scan) to ``destination`` and extract there, in a
    child process whose settings point at the copy. Returns the copy's ``locale`` directory."""
    root = project_root()
    shutil.copytree(root, destination, ignore=_copy_ignore, dirs_exist_ok=True)
    env = {**os.environ, "PIVRA_DATA_DIR": str(destination / "var"), "DJANGO_SETTINGS_MODULE": "pivra.settings"}
    subprocess.run(
        [sys.executable, "-m", "pivra.messages", "--extract-only", "--quiet"],
        cwd=destination,
        env=env,
        check=True,
    )
    return destination / "locale"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m pivra.messages", description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="change nothing; exit 1 when a catalogue needs work")
    parser.add_argument("--extract-only", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--quiet", action="store_true")
    args = parser.parse_args(argv)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "pivra.settings")
    import django

    django.setup()
    verbosity = 0 if args.quiet else 1
    root = project_root()
    if args.extract_only:
        extract(root, verbosity=verbosity)
        return 0
    if args.check:
        from pivra.message_checks import all_problems

        with tempfile.TemporaryDirectory(prefix="pivra-messages-") as tmp:
            problems = all_problems(committed=root / "locale", extracted=extract_into_copy(Path(tmp) / "src"))
        for problem in problems:
            print(problem)
        print(f"{len(problems)} problem(s)" if problems else "catalogues complete and compiled")
        return 1 if problems else 0
    extract(root, verbosity=verbosity)
    compile_all(root, verbosity=verbosity)
    return 0


if __name__ == "__main__":
    sys.exit(main())
