"""The process supervisor's decisions: which private servers to start, and how daphne is started."""

from __future__ import annotations

import argparse
import contextlib
from collections.abc import Iterator

import pytest

from pivra import stack


def test_daphne_never_trusts_its_own_leftmost_forwarded_address() -> None:
    def argv(**env: str) -> list[str]:
        return stack.daphne_argv(env=env, host="127.0.0.1", port=8000)

    # pivra/proxy.py reads the trusted hop instead (tests/test_proxy_and_origin.py).
    assert "--proxy-headers" not in argv()
    assert "--proxy-headers" not in argv(PIVRA_BEHIND_PROXY="false")
    assert "--proxy-headers" not in argv(PIVRA_BEHIND_PROXY="true")
    assert argv()[-1] == "pivra.asgi:application"
    with pytest.raises(stack.StackError, match="PIVRA_BEHIND_PROXY='maybe' is not a boolean"):
        argv(PIVRA_BEHIND_PROXY="maybe")


class _Stop(Exception):
    pass


@pytest.fixture
def asked_for(monkeypatch: pytest.MonkeyPatch) -> list[dict[str, bool]]:
    """What the commands ask private_services for; they stop right there."""
    calls: list[dict[str, bool]] = []

    @contextlib.contextmanager
    def private_services(*, postgres: bool, redis: bool, **more: object) -> Iterator[dict[str, str]]:
        calls.append({"postgres": postgres, "redis": redis})
        raise _Stop
        yield {}

    monkeypatch.setattr(stack, "private_services", private_services)
    monkeypatch.setattr(stack, "_forward_signals_as_keyboard_interrupt", lambda: None)
    monkeypatch.setattr(stack, "ensure_system_programs", lambda programs: None)
    return calls


@pytest.mark.parametrize(("value", "private"), [("", True), ("  ", True), ("redis://10.0.0.5:6379/0", False)])
def test_the_run_command_starts_a_private_redis_unless_a_url_is_given(
    asked_for: list[dict[str, bool]], monkeypatch: pytest.MonkeyPatch, value: str, private: bool
) -> None:
    monkeypatch.setenv("PIVRA_REDIS_URL", value)  # "": as .env.example has it
    with pytest.raises(_Stop):
        stack.command_run(argparse.Namespace(host="127.0.0.1", port=8000, password="x", demo=False))
    assert asked_for == [{"postgres": False, "redis": private}]


def test_the_test_command_treats_empty_urls_as_unset(
    asked_for: list[dict[str, bool]], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PIVRA_DATABASE_URL", "")
    monkeypatch.setenv("PIVRA_REDIS_URL", "")
    with pytest.raises(_Stop):
        stack.command_test(argparse.Namespace(skip_gates=True, pytest_args=[]))
    assert asked_for == [{"postgres": True, "redis": True}]


@pytest.mark.parametrize(
    ("host", "port", "public_url", "expected"),
    [
        ("127.0.0.1", 8011, "", "http://127.0.0.1:8011"),
        ("::1", 8000, "", "http://[::1]:8000"),
        ("0.0.0.0", 8000, "", None),
        ("127.0.0.1", 8011, "https://chat.example.com", None),
    ],
)
def test_the_run_command_names_the_port_it_serves_unless_a_public_url_is_set(
    host: str, port: int, public_url: str, expected: str | None
) -> None:
    env = {"PIVRA_PUBLIC_URL": public_url} if public_url else {}
    assert stack.served_public_url(host=host, port=port, env=env) == expected


@pytest.mark.parametrize("command", ["run", "test"])
def test_the_launcher_refuses_without_a_checkout(command, monkeypatch, tmp_path, capsys) -> None:
    """An installed copy (`pip install .`) has no manage.py: the launcher says so before it starts anything."""
    monkeypatch.setattr(stack, "ROOT", tmp_path)
    started: list[str] = []

    def record(name: str):
        def command(args: argparse.Namespace) -> int:
            started.append(name)
            return 0

        return command

    monkeypatch.setattr(stack, "command_run", record("run"))
    monkeypatch.setattr(stack, "command_test", record("test"))
    assert stack.main([command]) == 1
    assert started == []
    assert "runs from a checkout" in capsys.readouterr().err
