"""`pip install .` gives a working Pivra, and the hash-pinned locks are generated from pyproject.toml.

The wheel is built offline (no build isolation, .venv's setuptools) from a copy of the checkout, installed
without dependencies into a throwaway virtualenv that borrows .venv's packages, and run from a directory
outside the checkout: whatever the install lacks (a package, a migration, a template, a static file) shows.
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import sys
import sysconfig
import tomllib
import zipfile
from pathlib import Path

import pytest
from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

# The first test that needs the installed copy builds the wheel, makes a venv and installs it (up to
# 300 s of subprocess time limits) inside its own budget: more than pyproject's default 180 s.
pytestmark = pytest.mark.timeout(400)

ROOT = Path(__file__).resolve().parent.parent
PYPROJECT = tomllib.loads((ROOT / "pyproject.toml").read_text())
PIP = (sys.executable, "-m", "pip", "--quiet", "--no-input")
# Every top-level Django app of the checkout (a new app must be listed in pyproject.toml to ship).
APPS = tuple(sorted(path.parent.name for path in ROOT.glob("*/apps.py")))
# What a build reads: the install's sources, and the files pyproject.toml names.
BUILD_INPUTS = (*APPS, "templates", "static", "locale")
BUILD_FILES = ("pyproject.toml", "README.md", "LICENSE")

# Run inside the installed copy: where Django finds the app code, templates, static files and migrations.
PROBE = """
import json
import django
from django.conf import settings
from django.contrib.staticfiles import finders
from django.db.migrations.loader import MigrationLoader
from django.template.loader import get_template

from pivra.bootstrap import configure_or_exit

configure_or_exit()
django.setup()
import pivra
import pivra.asgi  # what daphne serves
import pivra.celery  # what the workers and beat load

print(json.dumps({
    "pivra": pivra.__file__,
    "data_dir": str(settings.DATA_DIR),
    "templates": {name: get_template(name).origin.name for name in %(templates)r},
    "rendered_404": get_template("404.html").render({}),
    "static": {name: finders.find(name) for name in %(static)r},
    "migrations": sorted("/".join(key) for key in MigrationLoader(None, load=True).disk_migrations),
}))
"""
TEMPLATES = ["404.html", "500.html", "registration/login.html", "widget/frame.html", "actions/email/event.html"]
STATIC = ["widget/loader.js", "widget/chat/socket.js", "console/console.css"]


def _checkout_packages() -> set[str]:
    """Every importable package of the Django apps in the checkout (directories with an __init__.py)."""
    found = set()
    for app in APPS:
        for init in (ROOT / app).rglob("__init__.py"):
            if "__pycache__" not in init.parts:
                found.add(".".join(init.parent.relative_to(ROOT).parts))
    return found


def _shipped_files() -> set[str]:
    """Paths the wheel must hold, as installed: app files that are not bytecode, and the site-wide dirs."""
    wanted = set()
    for app in APPS:
        for path in (ROOT / app).rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                wanted.add(path.relative_to(ROOT).as_posix())
    for site_dir in ("templates", "static", "locale"):
        for path in (ROOT / site_dir).rglob("*"):
            if path.is_file():
                wanted.add(f"pivra/bundled/{path.relative_to(ROOT).as_posix()}")
    return wanted


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("packaging")
    source = work / "source"
    for name in BUILD_INPUTS:  # a copy: the build writes build/ and *.egg-info next to its sources
        shutil.copytree(ROOT / name, source / name, ignore=shutil.ignore_patterns("__pycache__"))
    for name in BUILD_FILES:
        shutil.copy(ROOT / name, source / name)
    out = work / "dist"
    subprocess.run(
        [*PIP, "wheel", "--no-deps", "--no-index", "--no-build-isolation", "--wheel-dir", str(out), str(source)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    (built,) = out.glob("pivra-*.whl")
    return built


@pytest.fixture(scope="module")
def installed(wheel: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A virtualenv with only the wheel installed; .venv's site-packages supply the dependencies."""
    venv = tmp_path_factory.mktemp("installed") / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True, timeout=60)
    python = venv / "bin" / "python"
    purelib = subprocess.run(
        [python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()
    (Path(purelib) / "pivra-deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")
    subprocess.run(
        [*PIP, "--python", str(python), "install", "--no-deps", "--no-index", str(wheel)],
        check=True,
        capture_output=True,
        timeout=120,
    )
    return venv


def _run_outside(venv: Path, cwd: Path, *argv: str | Path) -> subprocess.CompletedProcess[str]:
    """Run from cwd with a clean environment: nothing points back at the checkout."""
    env = {"PATH": f"{venv / 'bin'}:/usr/bin:/bin", "HOME": str(cwd), "LANG": "C.UTF-8"}
    return subprocess.run(list(map(str, argv)), cwd=cwd, env=env, capture_output=True, text=True, timeout=120)


def test_the_wheel_ships_every_package_migration_template_and_static_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    missing = sorted(_shipped_files() - names)
    assert not missing, f"not in the wheel (pyproject.toml [tool.setuptools]): {missing[:10]}"


def test_the_wheel_carries_the_license_text_and_its_spdx_expression(wheel: Path) -> None:
    archive = zipfile.ZipFile(wheel)
    (metadata,) = (name for name in archive.namelist() if name.endswith(".dist-info/METADATA"))
    dist_info = metadata.rsplit("/", 1)[0]
    assert archive.read(f"{dist_info}/licenses/LICENSE") == (ROOT / "LICENSE").read_bytes()
    headers = archive.read(metadata).decode().split("\n\n", 1)[0].splitlines()
    assert "License-Expression: AGPL-3.0-or-later" in headers
    assert "License-File: LICENSE" in headers
    assert (ROOT / "LICENSE").read_text().lstrip().startswith("GNU AFFERO GENERAL PUBLIC LICENSE\n")


def test_pyproject_lists_every_package_of_the_checkout() -> None:
    listed = set(PYPROJECT["tool"]["setuptools"]["packages"])
    missing = sorted(_checkout_packages() - listed)
    assert not missing, f"add to pyproject.toml [tool.setuptools].packages: {missing}"
    assert {package.split(".")[0] for package in listed} == set(APPS)  # tests/ and bench/ stay out of the install


def test_installed_copy_passes_django_checks_outside_the_checkout(installed: Path, tmp_path: Path) -> None:
    checked = _run_outside(installed, tmp_path, installed / "bin" / "pivra", "check")
    assert checked.returncode == 0, checked.stderr
    assert "no issues" in checked.stdout


def test_installed_copy_finds_its_templates_static_files_and_migrations(installed: Path, tmp_path: Path) -> None:
    probe = PROBE % {"templates": TEMPLATES, "static": STATIC}
    result = _run_outside(installed, tmp_path, installed / "bin" / "python", "-c", probe)
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    site_packages = Path(found["pivra"]).parent.parent
    assert site_packages.is_relative_to(installed)
    # The user's data directory (HOME is tmp_path here): not site-packages, not the working directory.
    assert Path(found["data_dir"]) == tmp_path.resolve() / ".local" / "share" / "pivra"
    for name, origin in found["templates"].items():
        assert Path(origin).is_relative_to(site_packages), (name, origin)
    assert found["templates"]["404.html"] == str(site_packages / "pivra" / "bundled" / "templates" / "404.html")
    assert "</html>" in found["rendered_404"]
    for name, path in found["static"].items():
        assert path == str(site_packages / "pivra" / "bundled" / "static" / name)
    checkout_migrations = {
        f"{path.parent.parent.name}/{path.stem}" for app in APPS for path in (ROOT / app).glob("migrations/0*.py")
    }
    assert checkout_migrations and set(found["migrations"]) >= checkout_migrations


def _locked(lock: str) -> dict[str, str]:
    text = (ROOT / "requirements" / lock).read_text()
    return {canonicalize_name(name): version for name, version in re.findall(r"^([A-Za-z0-9_.\-]+)==(\S+)", text, re.M)}


def _requirements(*extras: str) -> list[Requirement]:
    project = PYPROJECT["project"]
    declared = [Requirement(line) for line in project["dependencies"]]
    for extra in extras:
        declared += [Requirement(line) for line in project["optional-dependencies"][extra]]
    return [req for req in declared if canonicalize_name(req.name) != "pivra"]  # dev includes pivra[bench]


@pytest.mark.parametrize(("lock", "extras"), [("base.lock", ()), ("dev.lock", ("dev", "bench"))])
def test_lock_pins_every_declared_dependency_within_its_range(lock: str, extras: tuple[str, ...]) -> None:
    pinned = _locked(lock)
    for req in _requirements(*extras):
        name = canonicalize_name(req.name)
        assert name in pinned, f"{req.name} is declared in pyproject.toml but not in {lock}: run `make lock`"
        assert req.specifier.contains(pinned[name], prereleases=True), f"{lock} pins {name}=={pinned[name]}; {req}"


def test_locks_are_generated_from_pyproject_only() -> None:
    assert not list((ROOT / "requirements").glob("*.in")), "pyproject.toml is the one dependency list"
    makefile = (ROOT / "Makefile").read_text()
    for lock in ("base.lock", "dev.lock"):
        header = (ROOT / "requirements" / lock).read_text().splitlines()[1].removeprefix("#").strip()
        assert header.startswith("uv pip compile pyproject.toml"), header
        assert header in makefile, f"{lock} was not generated by `make lock`: {header}"
    base, dev = _locked("base.lock"), _locked("dev.lock")
    assert {name: dev.get(name) for name in base} == base, "dev.lock must install the runtime pinned in base.lock"
