"""A throw-away PostgreSQL database for a benchmark's Dagster instance, on the local server's
Unix socket (``scripts/postgres`` installs and starts it)."""

from __future__ import annotations

import uuid

import psycopg2

SOCKET = "/var/run/postgresql"


def _as_admin(*statements: str) -> None:
    """Run ``statements`` on the server's own ``postgres`` database, outside a transaction (as
    CREATE and DROP DATABASE need)."""
    admin = psycopg2.connect(dbname="postgres", host=SOCKET)
    admin.autocommit = True
    with admin.cursor() as cursor:
        for statement in statements:
            cursor.execute(statement)
    admin.close()


def new_database(prefix: str) -> tuple[str, str]:
    """A new database, set up as ``scripts/postgres`` sets up production's; its name and URL."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    _as_admin(f'CREATE DATABASE "{name}"', f'ALTER DATABASE "{name}" SET synchronous_commit = off')
    return name, f"postgresql+psycopg2:///{name}?host={SOCKET}"


def drop_database(name: str) -> None:
    """Drop a database ``new_database`` made, once its instance is closed."""
    _as_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def database_bytes(name: str) -> int:
    with psycopg2.connect(dbname=name, host=SOCKET) as conn, conn.cursor() as cursor:
        cursor.execute("SELECT pg_database_size(current_database())")
        return cursor.fetchone()[0]
