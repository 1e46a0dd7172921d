"""The DuckDB schema: its tables, its version, and the migrations that bring an older file up to
date.

A file records its schema version in ``coinsum_schema``. Opening a file for writing creates the
tables (a new file), migrates an older one in one transaction (all or nothing), or refuses one
written by a newer coinsum, naming both versions. Files from before versions were recorded are
version 1.
"""

from __future__ import annotations

from collections.abc import Callable

import duckdb

from coinsum_pipeline.core.basket import DEFAULT_COINS

SCHEMA_VERSION = 2

SLOT_DDL = """
    slot_start  TIMESTAMP NOT NULL,  -- slot start, Beijing wall-clock time
    trade_date  DATE      NOT NULL,  -- Beijing calendar day
    slot_time   VARCHAR   NOT NULL,  -- 'HH:MM', Beijing
    slot_ts_ms  BIGINT    NOT NULL,  -- UTC epoch ms of the slot start = OKX candle ts
"""

COIN_SUM_DDL = f"""
    CREATE TABLE {{name}} ({SLOT_DDL}
        sum_pct         DOUBLE,            -- NULL when no coin reported
        coins_reported  INTEGER NOT NULL,
        coins_expected  INTEGER NOT NULL,  -- how many coins the slot's basket has
        complete        BOOLEAN NOT NULL,  -- every coin of the basket reported
        basket          VARCHAR NOT NULL,  -- the coins the sum is over: 'BTC,ETH,...'
        written_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
        PRIMARY KEY (slot_start)
    )"""

TABLES = {
    "coin_prices": f"""
        CREATE TABLE coin_prices ({SLOT_DDL}
            coin        VARCHAR NOT NULL,
            inst_id     VARCHAR NOT NULL,
            base_price  DOUBLE  NOT NULL,  -- open of the day's 00:00 30m candle
            price       DOUBLE  NOT NULL,  -- open of the slot's 30m candle
            pct_change  DOUBLE  NOT NULL,  -- (price - base_price) / base_price * 100
            written_at  TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (slot_start, coin)
        )""",
    "missing_values": f"""
        CREATE TABLE missing_values ({SLOT_DDL}
            coin        VARCHAR NOT NULL,
            reason      VARCHAR NOT NULL,  -- a missing reason: not_listed, no_candle, no_base, ...
            detail      VARCHAR,
            written_at  TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (slot_start, coin)
        )""",
    "coin_sum": COIN_SUM_DDL.format(name="coin_sum"),
    "baskets": """
        CREATE TABLE baskets (
            effective_from  DATE    NOT NULL,  -- the first Beijing day of this basket
            coins           VARCHAR NOT NULL,  -- 'BTC,ETH,...', in basket order
            previous        VARCHAR,           -- the basket it replaced (NULL: the first)
            recorded_at     TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (effective_from)
        )""",
    "coinsum_schema": """
        CREATE TABLE coinsum_schema (
            version     INTEGER NOT NULL,
            applied_at  TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            note        VARCHAR
        )""",
}


class SchemaError(RuntimeError):
    """The file's schema cannot be used by this coinsum; the message says what to do."""


def schema_version(conn: duckdb.DuckDBPyConnection) -> int | None:
    """The file's schema version: None for an empty file, 1 for files from before versions."""
    tables = {name for (name,) in conn.execute("SELECT table_name FROM duckdb_tables()").fetchall()}
    if "coin_sum" not in tables:
        return None
    if "coinsum_schema" not in tables:
        return 1
    (version,) = conn.execute("SELECT max(version) FROM coinsum_schema").fetchone()
    return version


def _migrate_1_to_2(conn: duckdb.DuckDBPyConnection) -> None:
    """Version 2 records each slot's basket and the basket history. A version-1 slot's basket is
    exactly the coins that have a row at it (every basket coin has a value or a missing row),
    in the default basket's order, then by name; each day's basket is that of its newest slot."""
    conn.execute(COIN_SUM_DDL.format(name="coin_sum_v2"))
    conn.execute(
        """
        INSERT INTO coin_sum_v2 BY NAME
        WITH coins AS (
            SELECT slot_start, coin FROM coin_prices
            UNION SELECT slot_start, coin FROM missing_values
        ), baskets AS (
            SELECT slot_start,
                   string_agg(coin, ',' ORDER BY coalesce(list_position(?, coin), 1000), coin)
                       AS basket
            FROM coins GROUP BY slot_start
        )
        SELECT s.*, coalesce(b.basket, '') AS basket
        FROM coin_sum s LEFT JOIN baskets b USING (slot_start)
        """,
        [list(DEFAULT_COINS)],
    )
    conn.execute("DROP TABLE coin_sum")
    conn.execute("ALTER TABLE coin_sum_v2 RENAME TO coin_sum")
    conn.execute(TABLES["coinsum_schema"])
    conn.execute(TABLES["baskets"])
    previous = None
    for day, basket in conn.execute(
        "SELECT trade_date, arg_max(basket, slot_start) FROM coin_sum GROUP BY 1 ORDER BY 1"
    ).fetchall():
        if basket != previous:
            conn.execute(
                "INSERT INTO baskets (effective_from, coins, previous) VALUES (?, ?, ?)",
                [day, basket, previous],
            )
            previous = basket


MIGRATIONS: dict[int, Callable[[duckdb.DuckDBPyConnection], None]] = {1: _migrate_1_to_2}


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> int | None:
    """Bring the file to ``SCHEMA_VERSION``: create it, migrate it in one transaction, or refuse
    it. Returns the version it had (None for a new file), so a caller knows it changed."""
    version = schema_version(conn)
    if version == SCHEMA_VERSION:
        return version
    if version is not None and version > SCHEMA_VERSION:
        raise SchemaError(
            f"this DuckDB file has schema version {version}, written by a newer coinsum; this "
            f"coinsum reads up to version {SCHEMA_VERSION}. Upgrade coinsum (git pull, then "
            "scripts/install), or point COINSUM_DB at another file."
        )
    conn.execute("BEGIN TRANSACTION")
    try:
        if version is None:
            for ddl in TABLES.values():
                conn.execute(ddl)
            note = "created"
        else:
            for step in range(version, SCHEMA_VERSION):
                MIGRATIONS[step](conn)
            note = f"migrated from version {version}"
        conn.execute(
            "INSERT INTO coinsum_schema (version, note) VALUES (?, ?)", [SCHEMA_VERSION, note]
        )
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise
    return version
