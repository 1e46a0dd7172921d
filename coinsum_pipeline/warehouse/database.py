"""The DuckDB file and its Dagster resource, the only door in: ``read()`` for the readers'
snapshot, ``write()`` (and ``baskets()``, ``change_basket()``) for the file itself. Every
``duckdb.connect`` of coinsum is here.

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
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import date, datetime
from pathlib import Path

import duckdb
from dagster_duckdb import DuckDBResource

from coinsum_pipeline.core.alerts import SlotSum
from coinsum_pipeline.core.basket import (
    DEFAULT_COINS,
    BasketError,
    BasketHistory,
    basket_text,
    check_requested,
)
from coinsum_pipeline.core.compute import SlotTables
from coinsum_pipeline.core.reasons import FILLABLE, MissingReason, repairable_details
from coinsum_pipeline.warehouse.schema import SCHEMA_VERSION, ensure_schema, schema_version
from coinsum_pipeline.warehouse.views import create_views

# A Python variable named like a missing table must never be read as that table.
CONNECTION_CONFIG = {"python_enable_replacements": False}


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


def read_baskets(conn: duckdb.DuckDBPyConnection) -> BasketHistory:
    """The basket history the file records (empty for a new file)."""
    rows = conn.execute("SELECT effective_from, coins FROM baskets ORDER BY 1").fetchall()
    return BasketHistory(tuple((day, tuple(coins.split(","))) for day, coins in rows))


def record_basket(conn: duckdb.DuckDBPyConnection, since: date, coins: Sequence[str]) -> None:
    """Record that ``coins`` is the basket from Beijing day ``since`` on, and what it replaced."""
    history = read_baskets(conn)
    previous = basket_text(history.on(since)) if history.changes else None
    conn.execute(
        "INSERT OR REPLACE INTO baskets (effective_from, coins, previous) VALUES (?, ?, ?)",
        [since, basket_text(coins), previous],
    )


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


def snapshot_path(database: str | Path) -> Path:
    """The readers' copy of ``database``: ``coinsum.duckdb`` -> ``coinsum.read.duckdb``."""
    path = Path(database)
    return path.with_name(f"{path.stem}.read{path.suffix or '.duckdb'}")


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


class Snapshot:
    """The readers' snapshot for a process that reads for hours (the board): one read-only
    attachment per version of the file, each request a cursor of its own.

    ``duckdb.connect`` hands a path that is already open in this process the same database
    instance, so a long-lived reader would keep reading the file it first opened after the
    pipeline has replaced it. Attaching the file to a fresh in-memory database per version
    does not share: when the snapshot's inode changes, the next request attaches the new file,
    and requests still running on the old one finish on it (the atomic rename leaves it whole;
    each request's cursor keeps its database open after this object lets go of it).
    """

    def __init__(self, database: str | Path) -> None:
        self.path = snapshot_path(database)
        self._lock = threading.Lock()
        self._version: tuple[int, int] | None = None
        self._current: duckdb.DuckDBPyConnection | None = None

    def version(self) -> tuple[int, int]:
        """The snapshot's identity (inode, modification time): it changes with every publish."""
        try:
            stat = self.path.stat()
        except FileNotFoundError:
            raise StorageError(
                f"no data yet: {self.path} does not exist. Run `coinsum backfill` first."
            ) from None
        return stat.st_ino, stat.st_mtime_ns

    @contextmanager
    def cursor(self) -> Iterator[duckdb.DuckDBPyConnection]:
        version = self.version()
        with self._lock:
            if version != self._version:
                attached = duckdb.connect(":memory:", config=CONNECTION_CONFIG)
                attached.execute("ATTACH ? AS snapshot (READ_ONLY)", [str(self.path)])
                self._current = attached
                self._version = version
            conn = self._current
        cursor = conn.cursor()
        try:
            cursor.execute("USE snapshot")
            yield cursor
        finally:
            cursor.close()


def _connect_waiting(
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


class CoinsumDatabase(DuckDBResource):
    """The DuckDB file (``COINSUM_DB``): the readers' snapshot, and the one safe way to write.

    ``write()`` queues behind other coinsum writers, waits for an outside holder (up to
    ``wait_seconds``, ``COINSUM_DB_WAIT_SECONDS``, then fails with ``DatabaseHeld`` naming
    it), brings the schema up to date, and after the write recreates the views and publishes
    the readers' snapshot once the write is committed and checkpointed.
    """

    wait_seconds: int

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The readers' snapshot, read-only: it never blocks a run, nor is blocked by one."""
        path = snapshot_path(self.database)
        if not path.exists():
            raise StorageError(f"no data yet: {path} does not exist. Run `coinsum backfill` first.")
        with duckdb.connect(str(path), read_only=True) as conn:
            yield conn

    @contextmanager
    def get_connection(
        self, log: logging.Logger | None = None
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """The file itself, for writing: waits ``wait_seconds`` for an outside holder, then
        raises ``DatabaseHeld``. Use ``write()``, which also queues coinsum's writers and
        publishes the snapshot; this is its raw connection."""
        log = log or logging.getLogger(__name__)
        conn = _connect_waiting(self.database, self.connection_config, log, self.wait_seconds)
        try:
            yield conn
        finally:
            conn.close()

    def probe(self) -> None:
        """Fail now, before any fetch, if the file cannot be written: its folder is not
        writable, or another process holds it. Waits for coinsum's own writers, as a run
        would; creates nothing that does not exist."""
        with writer_lock(self.database):
            if Path(self.database).exists():
                log = logging.getLogger(__name__)
                _connect_waiting(self.database, self.connection_config, log, 0).close()

    @contextmanager
    def _open(self, log: logging.Logger) -> Iterator[duckdb.DuckDBPyConnection]:
        with writer_lock(self.database, log), self.get_connection(log) as conn:
            ensure_schema(conn)
            yield conn
            create_views(conn, read_baskets(conn).all_coins())
            conn.execute("CHECKPOINT")
        publish_snapshot(self.database)

    def baskets(
        self, log: logging.Logger, requested: tuple[str, ...] | None, first_day: date
    ) -> BasketHistory:
        """The basket history a run goes by, after checking ``requested`` (``COINSUM_COINS``)
        against it. A new file records ``requested`` (or the default 27) from ``first_day`` on; an
        older file is migrated first. Raises ``BasketMismatch`` for a basket the file does not
        track, before anything is fetched. Reads the readers' snapshot when it is current (no
        lock, no copy), so only a new or older file costs a write here."""
        history = self._snapshot_baskets()
        if history is None:
            with self._open(log) as conn:
                history = read_baskets(conn)
                if not history.changes:
                    record_basket(conn, first_day, requested or DEFAULT_COINS)
                    history = read_baskets(conn)
        check_requested(history, requested)
        return history

    def change_basket(self, log: logging.Logger, since: date, coins: Sequence[str]) -> int:
        """Record ``coins`` as the basket from Beijing day ``since`` on. Returns how many stored
        days from then on were collected over another basket (they keep it until re-run)."""
        with self._open(log) as conn:
            history = read_baskets(conn)
            if history.changes and history.on(since) == tuple(coins):
                raise BasketError(
                    f"the basket from {since} on is already {basket_text(coins)}: nothing to "
                    "change."
                )
            record_basket(conn, since, coins)
            history = read_baskets(conn)
            stored = conn.execute(
                "SELECT DISTINCT trade_date, basket FROM coin_sum WHERE trade_date >= ?", [since]
            ).fetchall()
        return len({day for day, basket in stored if basket != basket_text(history.on(day))})

    def _snapshot_baskets(self) -> BasketHistory | None:
        if not snapshot_path(self.database).exists():
            return None
        with self.read() as conn:
            if schema_version(conn) != SCHEMA_VERSION:
                return None
            history = read_baskets(conn)
        return history if history.changes else None

    @contextmanager
    def write(
        self, log: logging.Logger, history: BasketHistory
    ) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection to write rows computed over ``history``; refused if the file's basket
        history changed since (a ``coinsum basket --set`` in between), so no slot is stored
        over a basket the file no longer has for its day."""
        with self._open(log) as conn:
            if read_baskets(conn) != history:
                raise StorageError(
                    "the basket changed while this run was fetching (coinsum basket --set); "
                    "nothing was written: run it again."
                )
            yield conn


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


def slot_sums_since(conn: duckdb.DuckDBPyConnection, since: datetime) -> list[SlotSum]:
    """The stored slots from ``since`` (naive or aware Beijing) on, oldest first, as the alerts
    see them."""
    rows = conn.execute(
        "SELECT slot_start, sum_pct, coins_reported, coins_expected FROM coin_sum "
        "WHERE slot_start >= ? ORDER BY slot_start",
        [since.replace(tzinfo=None)],
    ).fetchall()
    return [SlotSum(*row) for row in rows]
