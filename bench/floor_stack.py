"""The floor reference server (``bench/floor/``, vendored unchanged) on the bench's own PostgreSQL
and Redis: its own database, created from its ``schema.sql``, and its own port on loopback.

Pivra and the floor are measured in the same run with the same load generator and schedule, so
the ratio Pivra ÷ floor is what the figures compare (this machine's speed drifts between runs).
"""

from __future__ import annotations

import sys
from pathlib import Path

import psycopg

from pivra.stack import Service, free_port, spawn, wait_for_port

FLOOR_DIR = Path(__file__).resolve().parent / "floor"
DATABASE = "floor"
PG_POOL = 16  # the pool size the floor's README runs it with


def floor_database_url(postgres_url: str) -> str:
    """The bench PostgreSQL's URL with the floor's database instead of the default one."""
    base, _, _ = postgres_url.rpartition("/")
    return f"{base}/{DATABASE}"


def create_floor_database(postgres_url: str) -> str:
    """``CREATE DATABASE floor`` and its tables (``schema.sql``); returns the floor database's URL."""
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"DROP DATABASE IF EXISTS {DATABASE}")
        conn.execute(f"CREATE DATABASE {DATABASE}")
    url = floor_database_url(postgres_url)
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute((FLOOR_DIR / "schema.sql").read_text())
    return url


def start_floor(*, postgres_url: str, redis_url: str, log_dir: Path) -> tuple[Service, int]:
    """Start ``floor_server.py`` as its README says; returns the service and its port once it answers
    (it binds after its Redis subscription is ready and its PostgreSQL pool is filled)."""
    dsn = create_floor_database(postgres_url)
    port = free_port()
    argv = [
        sys.executable,
        str(FLOOR_DIR / "floor_server.py"),
        "--port",
        str(port),
        "--pg-dsn",
        dsn,
        "--redis-url",
        redis_url,
        "--pg-pool",
        str(PG_POOL),
    ]
    service = spawn("floor", argv, log_file=log_dir / "floor.log")
    try:
        wait_for_port("127.0.0.1", port, timeout=60, process=service.process)
    except BaseException:
        service.stop()
        raise
    return service, port
