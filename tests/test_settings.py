from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured
from django.db import connection

from pivra.env import env_bool, env_int, env_list

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
    internal = {"PIVRA_TEST"}
    missing_readme = sorted(v for v in used - internal if v not in readme)
    missing_example = sorted(v for v in used - internal if v not in example)
    assert not missing_readme, f"not in README.md: {missing_readme}"
    assert not missing_example, f"not in .env.example: {missing_example}"
