"""The DuckDB tables users query, and the one way rows get into them.

A run replaces exactly the slots it covers in all three tables inside one transaction, so a
re-run never duplicates a row and a reader never sees a half-written slot. After each write the
file is copied, whole and atomically, to a read-only snapshot beside it (``*.read.duckdb``):
DuckDB lets one process at a time hold a file, so users' SQL sessions open the snapshot and can
keep it open for hours without ever blocking a run.
"""

from __future__ import annotations

import fcntl
import logging
import os
import re
import shutil
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path

import duckdb
from dagster_duckdb import DuckDBResource

from coinsum_pipeline.compute import SlotTables
from coinsum_pipeline.reasons import FILLABLE, MissingReason, repairable_details
from coinsum_pipeline.views import create_views

SLOT_DDL = """
    slot_start  TIMESTAMP NOT NULL,  -- slot start, Beijing wall-clock time
    trade_date  DATE      NOT NULL,  -- Beijing calendar day
    slot_time   VARCHAR   NOT NULL,  -- 'HH:MM', Beijing
    slot_ts_ms  BIGINT    NOT NULL,  -- UTC epoch ms of the slot start = OKX candle ts
"""

SCHEMA = {
    "coin_prices": f"""
        CREATE TABLE IF NOT EXISTS coin_prices ({SLOT_DDL}
            coin        VARCHAR NOT NULL,
            inst_id     VARCHAR NOT NULL,
            base_price  DOUBLE  NOT NULL,  -- open of the day's 00:00 30m candle
            price       DOUBLE  NOT NULL,  -- open of the slot's 30m candle
            pct_change  DOUBLE  NOT NULL,  -- (price - base_price) / base_price * 100
            written_at  TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (slot_start, coin)
        )""",
    "missing_values": f"""
        CREATE TABLE IF NOT EXISTS missing_values ({SLOT_DDL}
            coin        VARCHAR NOT NULL,
            reason      VARCHAR NOT NULL,  -- a SPEC reason: not_listed, no_candle, no_base, ...
            detail      VARCHAR,
            written_at  TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (slot_start, coin)
        )""",
    "coin_sum": f"""
        CREATE TABLE IF NOT EXISTS coin_sum ({SLOT_DDL}
            sum_pct         DOUBLE,            -- NULL when no coin reported
            coins_reported  INTEGER NOT NULL,
            coins_expected  INTEGER NOT NULL,
            complete        BOOLEAN NOT NULL,  -- every coin of the basket reported
            written_at      TIMESTAMPTZ NOT NULL DEFAULT current_timestamp,
            PRIMARY KEY (slot_start)
        )""",
}


class StorageError(RuntimeError):
    """The DuckDB file cannot be used; the message says which file and what to do."""


class DatabaseHeld(StorageError):
    """Another process (a user's SQL session, not a coinsum writer) holds the DuckDB file.

    Not a transient fault: no retry helps until that session closes, so runs fail at once
    instead of retrying, and a backfill stops instead of trying its next run.
    """


# DuckDB: 'Could not set lock on file "…": Conflicting lock is held in /usr/bin/python3 (PID 42)'
_HOLDER = re.compile(r"Conflicting lock is held in (?P<program>.+?) \(PID (?P<pid>\d+)\)")


def _held(database: str | Path, exc: duckdb.Error, waited: float | None = None) -> DatabaseHeld:
    found = _HOLDER.search(str(exc))
    holder = f"PID {found['pid']} ({found['program']})" if found else f"another process ({exc})"
    after = f" for {waited:.0f} s" if waited else ""
    return DatabaseHeld(
        f"{database} is held by {holder}{after}, so coinsum did not write to it: what was "
        "stored before is unchanged. Close that session; for SQL, open "
        f"{snapshot_path(database)} instead, which coinsum keeps for readers (`coinsum sql`, "
        "or duckdb.connect(path, read_only=True)). Then run the same command again."
    )


def _is_lock_conflict(exc: duckdb.Error) -> bool:
    return "lock" in str(exc).lower()


def ensure_schema(conn: duckdb.DuckDBPyConnection) -> None:
    for ddl in SCHEMA.values():
        conn.execute(ddl)


def replace_slots(
    conn: duckdb.DuckDBPyConnection, first: datetime, last: datetime, tables: SlotTables
) -> None:
    """Replace every row of slots ``first``..``last`` (inclusive) with ``tables``, atomically."""
    bounds = [first.replace(tzinfo=None), last.replace(tzinfo=None)]
    conn.execute("BEGIN TRANSACTION")
    try:
        for name, frame in (
            ("coin_prices", tables.prices),
            ("missing_values", tables.missing),
            ("coin_sum", tables.sums),
        ):
            conn.execute(f"DELETE FROM {name} WHERE slot_start BETWEEN ? AND ?", bounds)
            conn.register("incoming", frame)
            conn.execute(f"INSERT INTO {name} BY NAME SELECT * FROM incoming")
            conn.unregister("incoming")
        conn.execute("COMMIT")
    except BaseException:
        conn.execute("ROLLBACK")
        raise


@contextmanager
def writer_lock(database: str, log: logging.Logger | None = None) -> Iterator[None]:
    """Queue writers on the DuckDB file instead of letting the second one fail.

    DuckDB allows one writing process per file. Runs from the UI, the schedule and the CLI can
    overlap, so each takes an exclusive lock on ``<file>.lock`` for its short write, saying so in
    the log when it has to wait.
    """
    path = Path(database)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        handle = open(f"{path}.lock", "a+")  # noqa: SIM115 - held for the whole block
    except OSError as exc:
        raise StorageError(
            f"cannot write the DuckDB file {path} ({exc.strerror}): set COINSUM_DB to a path in a "
            "writable folder."
        ) from exc
    with handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            handle.seek(0)
            holder = handle.read().strip() or "another process"
            (log or logging.getLogger(__name__)).info("waiting for %s, held by %s", path, holder)
            started = time.monotonic()
            fcntl.flock(handle, fcntl.LOCK_EX)
            (log or logging.getLogger(__name__)).info(
                "got %s after %.1f s", path, time.monotonic() - started
            )
        handle.seek(0)
        handle.truncate()
        handle.write(f"pid {os.getpid()}")
        handle.flush()
        try:
            yield
        finally:
            handle.truncate(0)
            fcntl.flock(handle, fcntl.LOCK_UN)


def range_summary(conn: duckdb.DuckDBPyConnection, first: datetime, last: datetime) -> dict:
    """Counts of what is stored for slots ``first``..``last``, as a backfill reports them."""
    bounds = [first.replace(tzinfo=None), last.replace(tzinfo=None)]
    between = "WHERE slot_start BETWEEN ? AND ?"
    (values,) = conn.execute(f"SELECT count(*) FROM coin_prices {between}", bounds).fetchone()
    (sums,) = conn.execute(f"SELECT count(*) FROM coin_sum {between}", bounds).fetchone()
    reasons = dict(
        conn.execute(
            f"SELECT reason, count(*) FROM missing_values {between} GROUP BY reason ORDER BY 1",
            bounds,
        ).fetchall()
    )
    return {
        "values": values,
        "sums": sums,
        "missing": sum(reasons.values()),
        "missing_by_reason": reasons,
    }


def snapshot_path(database: str | Path) -> Path:
    """The readers' copy of ``database``: ``coinsum.duckdb`` -> ``coinsum.read.duckdb``."""
    path = Path(database)
    return path.with_name(f"{path.stem}.read{path.suffix or '.duckdb'}")


def connect_snapshot(database: str | Path) -> duckdb.DuckDBPyConnection:
    """The readers' snapshot of ``database``, read-only: never blocks a run, nor is blocked."""
    path = snapshot_path(database)
    if not path.exists():
        raise StorageError(f"no data yet: {path} does not exist. Run `coinsum backfill` first.")
    return duckdb.connect(str(path), read_only=True)


def publish_snapshot(database: str | Path) -> Path:
    """Copy the (checkpointed, closed) database to its snapshot path in one atomic rename.

    A reader holding the old snapshot keeps reading the old file; the next one to open the
    path gets the new one. Neither waits for the other.
    """
    target = snapshot_path(database)
    staging = target.with_name(f".{target.name}.{os.getpid()}.tmp")
    shutil.copyfile(database, staging)
    os.replace(staging, target)
    return target


def connect_waiting(
    database: str, config: dict, log: logging.Logger, wait_seconds: float
) -> duckdb.DuckDBPyConnection:
    """Open ``database`` for writing, waiting while another process holds it.

    Our own writers queue on ``writer_lock``; this is for anyone else, such as a user's SQL
    session on the main file. DuckDB's error names the holder, so the log does too.
    """
    deadline = time.monotonic() + wait_seconds
    announced = False
    while True:
        try:
            return duckdb.connect(database, read_only=False, config=config)
        except duckdb.IOException as exc:
            if not _is_lock_conflict(exc):
                raise StorageError(f"cannot open the DuckDB file {database}: {exc}") from exc
            if time.monotonic() >= deadline:
                raise _held(database, exc, wait_seconds) from exc
            if not announced:
                log.warning(
                    "waiting up to %.0f s for %s, held by another process: %s",
                    wait_seconds,
                    database,
                    exc,
                )
                announced = True
            time.sleep(0.5)


def probe_writable(database: str) -> None:
    """Fail now, before any fetch, if ``database`` cannot be written: its folder is not
    writable, or another process holds the file. Waits for coinsum's own writers, as a run
    would; creates nothing that does not exist."""
    with writer_lock(database):
        if not Path(database).exists():
            return
        try:
            duckdb.connect(database, read_only=False).close()
        except duckdb.IOException as exc:
            if _is_lock_conflict(exc):
                raise _held(database, exc) from exc
            raise StorageError(f"cannot open the DuckDB file {database}: {exc}") from exc


class CoinsumDatabase(DuckDBResource):
    """The DuckDB file (``COINSUM_DB``) and the one safe way to write it.

    ``write()`` queues behind other coinsum writers, waits for an outside holder (up to
    ``wait_seconds``, ``COINSUM_DB_WAIT_SECONDS``, then fails with ``DatabaseHeld`` naming
    it), creates the tables and views, and publishes the readers' snapshot once the write is
    committed and checkpointed.
    """

    wait_seconds: int = 60

    @contextmanager
    def write(
        self, log: logging.Logger, coins: Sequence[str]
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """``coins``, the basket, are the columns of the ``day_table`` view."""
        with writer_lock(self.database, log):
            conn = connect_waiting(self.database, self.connection_config, log, self.wait_seconds)
            try:
                ensure_schema(conn)
                create_views(conn, coins)
                yield conn
                conn.execute("CHECKPOINT")
            finally:
                conn.close()
            publish_snapshot(self.database)


def stored_since(
    conn: duckdb.DuckDBPyConnection, since: datetime
) -> tuple[set[datetime], dict[datetime, str]]:
    """The slots stored from ``since`` on, and those whose missing values a later fetch may
    fill, each with its coins and reasons (``ETH no_candle, SOL no_base``). Slots are naive
    Beijing wall-clock times, as stored."""
    bounds = [since.replace(tzinfo=None)]
    stored = {
        s
        for (s,) in conn.execute(
            "SELECT slot_start FROM coin_sum WHERE slot_start >= ?", bounds
        ).fetchall()
    }
    gaps = conn.execute(
        """
        SELECT slot_start, string_agg(coin || ' ' || reason, ', ' ORDER BY coin)
        FROM missing_values
        WHERE slot_start >= ? AND (reason IN ? OR (reason = ? AND detail IN ?))
        GROUP BY slot_start
        """,
        [*bounds, [str(r) for r in FILLABLE], str(MissingReason.NO_BASE), repairable_details()],
    ).fetchall()
    return stored, dict(gaps)
