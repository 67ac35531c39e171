"""The service units in deploy/systemd run real commands: each ExecStart, with this checkout's Python
in place of /opt/pivra/.venv/bin/python, starts against the test database and Redis — daphne on a
socket handed over as systemd does (fd 3, through ``systemd-socket-activate``), a worker per queue,
beat, and the migrate unit's steps, whose ``check --deploy`` is clean with deploy/systemd/pivra.env."""

from __future__ import annotations

import os
import secrets
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from django.conf import settings
from django.db import connection

ROOT = Path(__file__).resolve().parent.parent
UNITS = ROOT / "deploy" / "systemd"
INSTALLED_PYTHON = "/opt/pivra/.venv/bin/python"
pytestmark = pytest.mark.django_db(transaction=True)


def env_file(path: Path) -> dict[str, str]:
    """KEY=value lines, as systemd's EnvironmentFile= reads them (comments and blanks skipped)."""
    pairs = (line.split("=", 1) for line in path.read_text().splitlines() if line.strip() and line[0] != "#")
    return {key.strip(): value.strip() for key, value in pairs}


def exec_starts(unit: str, *, instance: str = "", variables: dict[str, str] | None = None) -> list[list[str]]:
    """The unit's ExecStart command lines with systemd's specifiers and ${VARIABLES} filled in."""
    defaults = {}
    commands = []
    for line in (UNITS / unit).read_text().splitlines():
        if line.startswith("Environment="):
            key, value = line.removeprefix("Environment=").split("=", 1)
            defaults[key] = value
        if line.startswith("ExecStart="):
            commands.append(line.removeprefix("ExecStart="))
    values = {**defaults, **(variables or {})}
    filled = []
    for command in commands:
        command = command.replace("%i", instance).replace("%H", socket.gethostname())
        for key, value in values.items():
            command = command.replace(f"${{{key}}}", value)
        assert "$" not in command and "%" not in command, command
        argv = shlex.split(command)
        assert argv[0] == INSTALLED_PYTHON, argv
        filled.append([sys.executable, *argv[1:]])
    return filled


@pytest.fixture
def app_env() -> Iterator[dict[str, str]]:
    if connection.vendor != "postgresql":
        pytest.skip("the units are for PostgreSQL")
    db = connection.settings_dict
    data_dir = Path(tempfile.mkdtemp(prefix="pivra-units-"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PIVRA_", "DJANGO_ALLOW"))}
    env.update(
        PIVRA_DATABASE_URL=f"postgresql://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
        PIVRA_REDIS_URL=settings.REDIS_URL,
        PIVRA_SECRET_KEY="test-" + "x" * 40,
        PIVRA_DATA_DIR=str(data_dir),
        PIVRA_DB_POOL_MAX="4",
    )
    yield env
    shutil.rmtree(data_dir, ignore_errors=True)


def _runs_until(argv: list[str], env: dict[str, str], *, says: str) -> str:
    """Start a long-running command, wait (at most 60 s) until its output contains ``says``, stop it."""
    with tempfile.TemporaryFile("w+") as out:
        process = subprocess.Popen(argv, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
        try:
            deadline = time.monotonic() + 60
            while True:
                out.seek(0)
                text = out.read()
                if says in text:
                    return text
                assert process.poll() is None, f"{argv} exited with {process.returncode}:\n{text}"
                assert time.monotonic() < deadline, f"{argv} never said {says!r}:\n{text}"
                time.sleep(0.2)
        finally:
            process.terminate()
            process.wait(30)


def test_the_web_unit_serves_on_the_socket_systemd_hands_it(app_env: dict[str, str]) -> None:
    if not shutil.which("systemd-socket-activate"):
        pytest.skip("systemd-socket-activate is not installed")
    (daphne,) = exec_starts("pivra-web@.service", instance="1")
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    passed = [f"--setenv={key}={value}" for key, value in app_env.items()]
    # systemd-socket-activate listens, then runs the command with the socket as fd 3 (LISTEN_FDS=1).
    process = subprocess.Popen(
        ["systemd-socket-activate", f"--listen=127.0.0.1:{port}", *passed, *daphne],
        cwd=ROOT,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                answer = httpx.get(f"http://127.0.0.1:{port}/healthz", timeout=10)
                break
            except httpx.TransportError:
                assert process.poll() is None and time.monotonic() < deadline, "daphne --fd 3 never answered"
                time.sleep(0.2)
        assert answer.status_code in (200, 503) and "status" in answer.json()  # 503: no worker runs here
    finally:
        process.terminate()
        process.wait(30)


@pytest.mark.parametrize("queue", ["celery", "ai", "deliveries"])
def test_a_worker_unit_starts_for_each_queue(app_env: dict[str, str], queue: str) -> None:
    concurrency = env_file(UNITS / f"worker-{queue}.env") if (UNITS / f"worker-{queue}.env").exists() else {}
    (worker,) = exec_starts("pivra-worker@.service", instance=queue, variables=concurrency)
    assert worker[worker.index("--queues") + 1] == queue
    text = _runs_until(worker, app_env, says="ready.")
    assert f"{queue}@{socket.gethostname()}" in text


def test_the_beat_unit_starts(app_env: dict[str, str]) -> None:
    (beat,) = exec_starts("pivra-beat.service")
    schedule = Path(app_env["PIVRA_DATA_DIR"]) / "celerybeat-schedule"
    beat[beat.index("--schedule") + 1] = str(schedule)  # /var/lib/pivra is systemd's StateDirectory
    _runs_until(beat, app_env, says="beat: Starting")


def test_the_migrate_unit_runs_and_check_deploy_is_clean_with_the_example_environment(
    app_env: dict[str, str],
) -> None:
    production = {**env_file(UNITS / "pivra.env"), **app_env, "PIVRA_SECRET_KEY": secrets.token_urlsafe(50)}
    steps = exec_starts("pivra-migrate.service")
    assert [step[2] for step in steps] == ["check", "migrate", "collectstatic"]
    for step in steps:
        result = subprocess.run(step, cwd=ROOT, env=production, capture_output=True, text=True, timeout=300)
        assert result.returncode == 0, f"{step}: {result.stdout}{result.stderr}"
        if step[2] == "check":
            assert "System check identified no issues" in result.stdout + result.stderr
    assert (Path(app_env["PIVRA_DATA_DIR"]) / "static" / "widget" / "loader.js").exists()


@pytest.mark.parametrize("command", [["manage.py", "check"], ["-m", "celery", "-A", "pivra", "report"]])
def test_the_shipped_placeholder_secret_is_refused_so_no_unit_starts_with_it(
    app_env: dict[str, str], command: list[str]
) -> None:
    """Every unit loads the settings first; with pivra.env's placeholder key they stop there."""
    shipped = env_file(UNITS / "pivra.env")
    placeholder = {**shipped, **app_env, "PIVRA_SECRET_KEY": shipped["PIVRA_SECRET_KEY"]}
    refused = subprocess.run(
        [sys.executable, *command], cwd=ROOT, env=placeholder, capture_output=True, text=True, timeout=300
    )
    assert refused.returncode != 0
    assert "PIVRA_SECRET_KEY must be at least 32 characters long" in refused.stderr, refused.stderr


HARDENING = [
    "NoNewPrivileges=yes",
    "ProtectSystem=strict",
    "ProtectHome=yes",
    "PrivateDevices=yes",
    "ProtectKernelTunables=yes",
    "ProtectKernelModules=yes",
    "ProtectControlGroups=yes",
    "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
    "RestrictNamespaces=yes",
    "LockPersonality=yes",
    "CapabilityBoundingSet=",
    "SystemCallFilter=@system-service",
    "UMask=0027",
    "StateDirectory=pivra",
]


@pytest.mark.parametrize("unit", sorted(p.name for p in UNITS.glob("*.service")))
def test_every_service_is_hardened_and_a_restarting_one_never_gives_up(unit: str) -> None:
    lines = (UNITS / unit).read_text().splitlines()
    assert [line for line in HARDENING if line not in lines] == []
    if "Restart=always" in lines:
        assert "StartLimitIntervalSec=0" in lines[: lines.index("[Service]")]  # a [Unit] setting


def test_systemd_analyze_verify_accepts_the_units(tmp_path: Path) -> None:
    """``systemd-analyze verify`` on each unit (templates as an instance), with the executable it
    names present: this checkout's Python at the units' path, via a copy with the paths swapped."""
    if not shutil.which("systemd-analyze"):
        pytest.skip("systemd-analyze is not installed")
    names = {
        "pivra-web.socket": "pivra-web.socket",
        "pivra-web@.service": "pivra-web@1.service",
        "pivra-worker@.service": "pivra-worker@ai.service",
        "pivra-beat.service": "pivra-beat.service",
        "pivra-migrate.service": "pivra-migrate.service",
    }
    assert sorted(p.name for p in UNITS.glob("*.s*")) == sorted(names)
    for source, name in names.items():
        text = (UNITS / source).read_text().replace(INSTALLED_PYTHON, sys.executable)
        (tmp_path / name).write_text(text.replace("/opt/pivra", str(ROOT)))
        if name != source:  # the instance's template must be there too
            (tmp_path / source).write_text((tmp_path / name).read_text())
    result = subprocess.run(
        ["systemd-analyze", "verify", *(f"./{name}" for name in names.values())],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0 and not result.stderr.strip(), result.stderr


NGINX = ROOT / "deploy" / "nginx"


def test_nginx_accepts_the_repo_site_with_tls(tmp_path: Path) -> None:
    """``nginx -t`` on deploy/nginx as shipped (TLS site.conf, static.conf, upstreams.conf), only the
    certificate paths pointed at a throw-away self-signed pair and the runtime files moved here."""
    if not shutil.which("nginx") or not shutil.which("openssl"):
        pytest.skip("nginx or openssl is not installed")
    cert, key = tmp_path / "fullchain.pem", tmp_path / "privkey.pem"
    made = subprocess.run(
        [
            *(
                "openssl",
                "req",
                "-x509",
                "-newkey",
                "rsa:2048",
                "-nodes",
                "-days",
                "1",
                "-subj",
                "/CN=chat.example.com",
            ),
            *("-keyout", str(key), "-out", str(cert)),
        ],
        capture_output=True,
        text=True,
    )
    assert made.returncode == 0, made.stderr
    (tmp_path / "pivra").mkdir()
    for name in ("upstreams.conf", "static.conf"):
        shutil.copy(NGINX / "pivra" / name, tmp_path / "pivra" / name)
    site = (NGINX / "pivra" / "site.conf").read_text()
    live = "/etc/letsencrypt/live/chat.example.com/"
    assert site.count(live) == 2
    (tmp_path / "pivra" / "site.conf").write_text(
        site.replace(f"{live}fullchain.pem", str(cert)).replace(f"{live}privkey.pem", str(key))
    )
    main = tmp_path / "nginx.conf"
    main.write_text(
        f"pid {tmp_path}/nginx.pid;\nerror_log {tmp_path}/error.log;\nevents {{}}\n"
        f"http {{\n include /etc/nginx/mime.types;\n include {NGINX / 'pivra.conf'};\n}}\n"
    )
    checked = subprocess.run(
        ["nginx", "-t", "-c", str(main), "-e", str(tmp_path / "error.log")], capture_output=True, text=True
    )
    assert checked.returncode == 0, checked.stderr
    assert "[emerg]" not in checked.stderr, checked.stderr
    # The static location serves PIVRA_DATA_DIR/static/ only, never the data dir holding the secret key.
    assert (NGINX / "pivra" / "static.conf").read_text().splitlines()[-1] == "alias /var/lib/pivra/static/;"
    assert "root " not in site
