"""The DuckDB writes: exact slot replacement, atomicity, NULL sums, and queued writers."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from coinsum_pipeline.backfill import run_slots
from coinsum_pipeline.compute import SlotTables, compute_slot_tables
from coinsum_pipeline.fetch import CoinFetch
from coinsum_pipeline.okx import Candle
from coinsum_pipeline.partitions import SLOT, epoch_ms, slots_in
from coinsum_pipeline.storage import (
    CoinsumDatabase,
    StorageError,
    ensure_schema,
    replace_slots,
    snapshot_path,
    writer_lock,
)
from coinsum_pipeline_tests.conftest import Pipeline, beijing

DAY = beijing("2026-01-05 00:00")


def day_tables(price: float, first: int = 0, count: int = 48) -> tuple[list, SlotTables]:
    slots = list(slots_in(DAY + first * SLOT, DAY + (first + count) * SLOT))
    candles = {
        epoch_ms(s): Candle(epoch_ms(s), price, True) for s in slots_in(DAY, DAY + 48 * SLOT)
    }
    fetched = {"BTC": CoinFetch(candles), "NOPE": CoinFetch(failure="unknown_instrument")}
    return slots, compute_slot_tables(slots, ["BTC", "NOPE"], fetched)


def counts(conn: duckdb.DuckDBPyConnection) -> tuple[int, int, int]:
    return tuple(
        conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
        for t in ("coin_prices", "missing_values", "coin_sum")
    )


def test_replace_touches_exactly_its_slots(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "c.duckdb")) as conn:
        ensure_schema(conn)
        slots, tables = day_tables(100.0)
        replace_slots(conn, slots[0], slots[-1], tables)
        assert counts(conn) == (48, 48, 48)
        slots, tables = day_tables(100.0, first=10, count=5)
        replace_slots(conn, slots[0], slots[-1], tables)
        assert counts(conn) == (48, 48, 48)
        written = conn.execute("SELECT count(DISTINCT written_at) FROM coin_sum").fetchone()
        assert written == (2,), "the five re-run slots were rewritten, the rest left alone"


def test_a_failed_write_leaves_the_previous_rows(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "c.duckdb")) as conn:
        ensure_schema(conn)
        slots, tables = day_tables(100.0)
        replace_slots(conn, slots[0], slots[-1], tables)
        broken = SlotTables(tables.prices, tables.missing, tables.sums.assign(coins_reported="x"))
        with pytest.raises(duckdb.Error):
            replace_slots(conn, slots[0], slots[-1], broken)
        assert counts(conn) == (48, 48, 48)


def test_a_slot_where_no_coin_reported_stores_null_not_zero(tmp_path: Path) -> None:
    with duckdb.connect(str(tmp_path / "c.duckdb")) as conn:
        ensure_schema(conn)
        slots, tables = day_tables(100.0, count=2)
        sums = tables.sums.copy()
        sums.loc[1, ["sum_pct", "coins_reported", "complete"]] = [None, 0, False]
        replace_slots(conn, slots[0], slots[-1], SlotTables(tables.prices, tables.missing, sums))
        rows = conn.execute("SELECT sum_pct FROM coin_sum ORDER BY slot_start").fetchall()
        assert rows == [(0.0,), (None,)]
        assert pd.isna(sums.loc[1, "sum_pct"])


def test_second_writer_waits_and_says_who_holds_the_file(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    database = str(tmp_path / "c.duckdb")
    order: list[str] = []
    holding = threading.Event()

    def first() -> None:
        with writer_lock(database):
            holding.set()
            time.sleep(0.5)
            order.append("first done")

    thread = threading.Thread(target=first)
    thread.start()
    holding.wait()
    with caplog.at_level(logging.INFO), writer_lock(database):
        order.append("second in")
    thread.join()
    assert order == ["first done", "second in"]
    assert "held by pid" in caplog.text


def test_unwritable_database_path_says_what_to_do() -> None:
    lock = writer_lock("/proc/coinsum/c.duckdb")
    with pytest.raises(StorageError, match="set COINSUM_DB to a path in a writable folder"):
        lock.__enter__()


HOLD = """
import sys, time, duckdb
conn = duckdb.connect(sys.argv[1], read_only=True)
print(conn.execute("SELECT count(*) FROM coin_sum").fetchone()[0], flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold(path: Path, seconds: float) -> tuple[subprocess.Popen, int]:
    """Another process holding ``path`` read-only, like a user's SQL session, and the number of
    slots it saw on opening; returns once the file is open."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds)], stdout=subprocess.PIPE, text=True
    )
    return proc, int(proc.stdout.readline())


def write_day(db: CoinsumDatabase, log: logging.Logger) -> None:
    slots, tables = day_tables(100.0)
    with db.write(log, ["BTC", "NOPE"]) as conn:
        replace_slots(conn, slots[0], slots[-1], tables)


def test_a_reader_on_the_snapshot_never_blocks_a_run(pipeline: Pipeline) -> None:
    assert run_slots([beijing("2026-01-05 10:00")], pipeline.instance).success
    snapshot = snapshot_path(pipeline.db)
    reader, seen = hold(snapshot, 120)
    try:
        assert seen == 1
        assert run_slots([beijing("2026-01-05 10:30")], pipeline.instance).success
        with duckdb.connect(str(snapshot), read_only=True) as conn:
            assert conn.execute("SELECT count(*) FROM coin_sum").fetchone() == (2,)
        assert reader.poll() is None, "the reader still holds its session"
    finally:
        reader.kill()


def test_outside_holder_of_the_main_file_makes_writers_wait_then_fail_clearly(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = CoinsumDatabase(database=str(tmp_path / "c.duckdb"), wait_seconds=1.5)
    log = logging.getLogger("test")
    write_day(db, log)
    holder, _ = hold(tmp_path / "c.duckdb", 120)
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(StorageError) as failed:
            write_day(db, log)
        assert f"PID {holder.pid}" in caplog.text, "the wait names who holds the file"
        assert "stayed held by another process" in str(failed.value)
        assert "c.read.duckdb instead" in str(failed.value)
    finally:
        holder.kill()
        holder.wait()
    with duckdb.connect(str(tmp_path / "c.duckdb"), read_only=True) as conn:
        assert counts(conn) == (48, 48, 48)


def test_writer_proceeds_once_the_outside_holder_lets_go(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    db = CoinsumDatabase(database=str(tmp_path / "c.duckdb"), wait_seconds=60)
    log = logging.getLogger("test")
    write_day(db, log)
    holder, _ = hold(tmp_path / "c.duckdb", 1.0)
    with caplog.at_level(logging.WARNING):
        write_day(db, log)
    holder.wait()
    assert "waiting for" in caplog.text
    with duckdb.connect(str(snapshot_path(db.database)), read_only=True) as conn:
        assert counts(conn) == (48, 48, 48)
