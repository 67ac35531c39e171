"""Production defaults: `check --deploy` is clean with an https public URL behind a proxy, http is
redirected (but not the load balancer's /healthz probe), HSTS is sent, and the webhook deadline."""

from __future__ import annotations

import os
import secrets
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from django.test import Client

ROOT = Path(__file__).resolve().parent.parent
PRODUCTION = {
    "PIVRA_DEBUG": "false",
    "PIVRA_PUBLIC_URL": "https://chat.example.com",
    "PIVRA_ALLOWED_HOSTS": "chat.example.com",
    "PIVRA_BEHIND_PROXY": "true",
}
# Variables that would change what is checked: the production settings above decide.
# DJANGO_ALLOW_ASYNC_UNSAFE belongs to the browser tests' process (tests/e2e/conftest.py), never to
# a deployment, and check --deploy rightly refuses it (async.E001).
OVERRIDDEN = (
    "PIVRA_SSL_REDIRECT",
    "PIVRA_HSTS_SECONDS",
    "PIVRA_HSTS_PRELOAD",
    "PIVRA_HSTS_INCLUDE_SUBDOMAINS",
    "DJANGO_ALLOW_ASYNC_UNSAFE",
)


def _manage(*args: str, **overrides: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in OVERRIDDEN}
    env.update(PIVRA_SECRET_KEY=secrets.token_urlsafe(50), **overrides)
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=120
    )


def test_check_deploy_prints_no_warning_with_production_settings() -> None:
    result = _manage("check", "--deploy", "--fail-level", "WARNING", **PRODUCTION)
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues" in output, output
    assert "WARNING" not in output and "security.W" not in output, output


def test_production_settings_turn_on_hsts_and_the_redirect_and_development_keeps_them_off() -> None:
    show = (
        "from django.conf import settings as s; "
        "print(s.SECURE_HSTS_SECONDS, s.SECURE_SSL_REDIRECT, s.SECURE_HSTS_INCLUDE_SUBDOMAINS, "
        "s.SECURE_HSTS_PRELOAD, s.WEBHOOK_TIMEOUT)"
    )

    def values(result: subprocess.CompletedProcess[str]) -> list[str]:
        assert result.returncode == 0, result.stderr
        return result.stdout.strip().splitlines()[-1].split()  # after the shell's own banner

    production = _manage("shell", "-c", show, **PRODUCTION)
    assert values(production) == ["31536000", "True", "True", "False", "15.0"], production.stderr
    # An https URL without a proxy saying which requests were https: redirecting would loop forever.
    no_proxy = _manage("shell", "-c", show, **{**PRODUCTION, "PIVRA_BEHIND_PROXY": "false"})
    assert values(no_proxy)[:2] == ["31536000", "False"], no_proxy.stderr
    development = _manage("shell", "-c", show, PIVRA_PUBLIC_URL="http://127.0.0.1:8000")
    assert values(development)[:2] == ["0", "False"], development.stderr


def test_trusted_proxies_default_to_private_ranges_and_a_bad_entry_stops_the_start() -> None:
    show = "from django.conf import settings as s; print(','.join(s.TRUSTED_PROXIES))"
    default = _manage("shell", "-c", show, PIVRA_TRUSTED_PROXIES="")
    assert default.returncode == 0, default.stderr
    assert default.stdout.strip().splitlines()[-1] == (
        "127.0.0.0/8,::1,10.0.0.0/8,172.16.0.0/12,192.168.0.0/16,fc00::/7"
    )
    listed = _manage("shell", "-c", show, PIVRA_TRUSTED_PROXIES="198.51.100.0/24, 2001:db8::7")
    assert listed.stdout.strip().splitlines()[-1] == "198.51.100.0/24,2001:db8::7", listed.stderr
    bad = _manage("check", PIVRA_TRUSTED_PROXIES="10.0.0.0/8,proxy.internal")
    assert bad.returncode != 0
    assert "PIVRA_TRUSTED_PROXIES: 'proxy.internal' is not an IP address or CIDR range" in bad.stderr


@pytest.fixture
def production(settings: Any) -> Any:
    settings.SECURE_SSL_REDIRECT = True
    settings.SECURE_HSTS_SECONDS = 31_536_000
    settings.SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
    settings.ALLOWED_HOSTS = ["chat.example.com"]
    return settings


@pytest.mark.django_db
def test_http_is_redirected_but_the_health_probe_is_not(production: Any) -> None:
    client = Client(HTTP_HOST="chat.example.com")
    page = client.get("/accounts/login/", headers={"x-forwarded-proto": "http"})
    assert page.status_code == 301 and page["Location"] == "https://chat.example.com/accounts/login/"
    probe = client.get("/healthz", headers={"x-forwarded-proto": "http"})
    assert probe.status_code in (200, 503)  # answered, not redirected
    secure = client.get("/accounts/login/", headers={"x-forwarded-proto": "https"})
    assert secure.status_code == 200
    assert secure["Strict-Transport-Security"] == "max-age=31536000; includeSubDomains"


def test_check_deploy_fails_while_the_push_drop_test_hook_is_on() -> None:
    result = _manage("check", "--deploy", **{**PRODUCTION, "PIVRA_TEST_DROP_PUSH": "1"})
    output = result.stdout + result.stderr
    assert result.returncode != 0, output
    assert "pivra.E030" in output and "PIVRA_TEST_DROP_PUSH" in output, output
