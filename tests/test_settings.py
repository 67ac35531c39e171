from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from pivra.env import env_bool, env_choice, env_float, env_int, env_is_set, env_list, env_str

ROOT = Path(__file__).resolve().parent.parent


def _manage_check(**overrides: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, **overrides}
    return subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )


@pytest.mark.parametrize(
    ("variable", "value", "message"),
    [
        ("PIVRA_DEBUG", "maybe", "PIVRA_DEBUG='maybe' is not a boolean"),
        ("PIVRA_DATABASE_URL", "postgres://user@host:notaport/db", "PIVRA_DATABASE_URL is malformed"),
        ("PIVRA_DATABASE_URL", "mysql://u@h/db", "PIVRA_DATABASE_URL must be a postgresql:// or sqlite:/// URL"),
        ("PIVRA_EMAIL_PORT", "smtp", "PIVRA_EMAIL_PORT='smtp' is not a whole number"),
        ("PIVRA_REDIS_URL", "localhost:6379", "PIVRA_REDIS_URL='localhost:6379' must start with redis://"),
    ],
)
def test_a_bad_variable_stops_start_up_with_one_line(variable: str, value: str, message: str) -> None:
    result = _manage_check(**{variable: value})
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert message in lines[0]
    assert lines[0].startswith("pivra: configuration error:")


def test_good_configuration_passes_the_system_check() -> None:
    result = _manage_check()
    assert result.returncode == 0, result.stderr


def test_typed_helpers_accept_good_values_and_name_bad_ones() -> None:
    assert env_bool("X", False, environ={"X": "yes"}) is True
    assert env_bool("X", True, environ={"X": "off"}) is False
    assert env_int("X", 1, environ={"X": "42"}) == 42
    assert env_list("X", [], environ={"X": "a, b,,c"}) == ["a", "b", "c"]
    with pytest.raises(ImproperlyConfigured, match="PIVRA_N=0 is below the minimum of 1"):
        env_int("PIVRA_N", 5, min_value=1, environ={"PIVRA_N": "0"})


def test_an_empty_variable_counts_as_unset() -> None:
    empty = {"X": "", "Y": "  "}
    assert env_is_set("X", environ=empty) is False and env_is_set("Y", environ=empty) is False
    assert env_bool("X", True, environ=empty) is True  # not silently false
    assert env_bool("Y", False, environ=empty) is False
    assert env_str("X", "fallback", environ=empty) == "fallback"
    assert env_int("X", 7, environ=empty) == 7
    assert env_float("X", 1.5, environ=empty) == 1.5
    assert env_list("X", ["a"], environ=empty) == ["a"]
    assert env_choice("X", "pubsub", ("pubsub", "lists"), environ=empty) == "pubsub"
    assert env_is_set("X", environ={"X": "0"}) is True


def _env_example() -> dict[str, str]:
    """.env.example as a shell or a process manager loads it: every line, empty values included."""
    values = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            values[name.strip()] = value
    return values


def test_env_example_loaded_as_is_gives_the_documented_defaults(tmp_path: Path) -> None:
    example = _env_example()
    assert example["PIVRA_DATABASE_URL"] == "" and example["PIVRA_REDIS_URL"] == ""  # what this test is about
    assert example["PIVRA_SECURE_COOKIES"] == "" and example["PIVRA_EMAIL_USE_TLS"] == ""
    base = {k: v for k, v in os.environ.items() if not k.startswith(("PIVRA_", "DJANGO_"))}
    env = {**base, **example, "PIVRA_DATA_DIR": str(tmp_path), "PIVRA_PUBLIC_URL": "https://chat.example.com"}
    script = (
        "import json; from pivra.bootstrap import configure_or_exit; configure_or_exit(); "
        "from django.conf import settings as s; print(json.dumps({'engine': s.DATABASES['default']['ENGINE'], "
        "'db': str(s.DATABASES['default']['NAME']), 'redis': s.REDIS_URL, 'secure': s.SESSION_COOKIE_SECURE, "
        "'tls': s.EMAIL_USE_TLS, 'ssl': s.EMAIL_USE_SSL, 'hosts': s.ALLOWED_HOSTS}))"
    )
    shown = subprocess.run(
        [sys.executable, "-c", script], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert shown.returncode == 0, shown.stderr
    assert json.loads(shown.stdout) == {
        "engine": "django.db.backends.sqlite3",
        "db": str(tmp_path / "pivra.sqlite3"),
        "redis": "redis://127.0.0.1:6379/0",
        "secure": True,  # on by default for an https public URL
        "tls": True,  # STARTTLS by default on port 587
        "ssl": False,
        "hosts": ["127.0.0.1", "localhost"],
    }
    checked = subprocess.run(
        [sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert checked.returncode == 0, checked.stderr


@pytest.mark.parametrize("process", ["worker", "beat"])
def test_a_celery_process_with_a_bad_variable_stops_with_one_line(process: str) -> None:
    result = subprocess.run(
        [sys.executable, "-m", "celery", "-A", "pivra", process, "--loglevel", "WARNING"],
        cwd=ROOT,
        env={**os.environ, "PIVRA_DEBUG": "maybe"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines() == [
        "pivra: configuration error: PIVRA_DEBUG='maybe' is not a boolean: use one of true/false, 1/0, yes/no, on/off."
    ]


def test_the_suite_runs_on_postgresql(db: None) -> None:
    """The README's test command runs on PostgreSQL; SQLite only when asked for explicitly."""
    if os.environ.get("PIVRA_ALLOW_SQLITE_TESTS") == "1":
        pytest.skip("PIVRA_ALLOW_SQLITE_TESTS=1")
    assert connection.vendor == "postgresql"


def test_every_pivra_variable_is_documented() -> None:
    """Each PIVRA_* variable the code reads appears in the README and in .env.example."""
    import re

    used: set[str] = set()
    for path in ROOT.glob("*/**/*.py"):
        if ".venv" in path.parts or "tests" in path.parts:
            continue
        used.update(re.findall(r"\"(PIVRA_[A-Z0-9_]+)\"", path.read_text()))
    readme = (ROOT / "README.md").read_text()
    example = (ROOT / ".env.example").read_text()
    internal = {"PIVRA_TEST", "PIVRA_TEST_DROP_PUSH"}  # test hooks: README "Development" only, never in .env
    missing_readme = sorted(v for v in used - internal if v not in readme)
    missing_example = sorted(v for v in used - internal if v not in example)
    assert not missing_readme, f"not in README.md: {missing_readme}"
    assert not missing_example, f"not in .env.example: {missing_example}"
