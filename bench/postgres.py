"""A throw-away PostgreSQL database for a benchmark's Dagster instance, on the local server's
Unix socket (``scripts/postgres`` installs and starts it)."""

from __future__ import annotations

import os
import uuid

import psycopg2

from coinsum_pipeline.instance.pgbouncer import SERVER_SOCKET as SOCKET


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


def share_connections() -> None:
    """Make Dagster's PostgreSQL storages in this process share one pool of connections per
    database, instead of opening a connection for each storage operation (their engines have no
    pool, so that an instance holds nothing open).

    For the soak only: it builds many instances a simulated minute (one per sensor tick, as the
    code server does), and connecting was most of its time. What is stored is the same. A forked
    process (a run) drops the inherited pools and opens its own connections, as SQLAlchemy asks.
    """
    import sqlalchemy
    from dagster_postgres.event_log import event_log
    from dagster_postgres.run_storage import run_storage
    from dagster_postgres.schedule_storage import schedule_storage

    engines: dict[str, sqlalchemy.engine.Engine] = {}

    def shared_engine(url: str, token_provider=None, **_no_pool) -> sqlalchemy.engine.Engine:
        if url not in engines:
            engines[url] = sqlalchemy.create_engine(
                url, isolation_level="AUTOCOMMIT", pool_size=4, max_overflow=16
            )
        return engines[url]

    for storage in (event_log, run_storage, schedule_storage):
        storage.create_pg_engine = shared_engine
    os.register_at_fork(
        after_in_child=lambda: [engine.dispose(close=False) for engine in engines.values()]
    )
