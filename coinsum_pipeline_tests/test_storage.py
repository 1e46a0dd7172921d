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
from dagster import DagsterEventType

from coinsum_pipeline.backfill import run_slots
from coinsum_pipeline.core.compute import SlotTables, compute_slot_tables
from coinsum_pipeline.core.market import Candle, CoinFetch
from coinsum_pipeline.core.slots import SLOT, epoch_ms, slots_in
from coinsum_pipeline.warehouse.database import (
    CoinsumDatabase,
    DatabaseHeld,
    StorageError,
    replace_slots,
    snapshot_path,
    writer_lock,
)
from coinsum_pipeline.warehouse.schema import ensure_schema
from coinsum_pipeline_tests.helpers import Pipeline, beijing

DAY = beijing("2026-01-05 00:00")


def day_tables(price: float, first: int = 0, count: int = 48) -> tuple[list, SlotTables]:
    slots = list(slots_in(DAY + first * SLOT, DAY + (first + count) * SLOT))
    candles = {
        epoch_ms(s): Candle(epoch_ms(s), price, True) for s in slots_in(DAY, DAY + 48 * SLOT)
    }
    fetched = {"BTC": CoinFetch(candles), "NOPE": CoinFetch(failure="unknown_instrument")}
    return slots, compute_slot_tables(slots, lambda _day: ("BTC", "NOPE"), fetched)


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
conn = duckdb.connect(sys.argv[1], read_only=sys.argv[3] == "read_only")
print(conn.execute("SELECT count(*) FROM coin_sum").fetchone()[0], flush=True)
time.sleep(float(sys.argv[2]))
"""


def hold(path: Path, seconds: float, mode: str = "read_only") -> tuple[subprocess.Popen, int]:
    """Another process holding ``path`` (``read_only`` or ``read_write``), like a user's SQL
    session, and the number of slots it saw on opening; returns once the file is open."""
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path), str(seconds), mode],
        stdout=subprocess.PIPE,
        text=True,
    )
    return proc, int(proc.stdout.readline())


def write_day(db: CoinsumDatabase, log: logging.Logger) -> None:
    slots, tables = day_tables(100.0)
    history = db.baskets(log, ("BTC", "NOPE"), DAY.date())
    with db.write(log, history) as conn:
        replace_slots(conn, slots[0], slots[-1], tables)


@pytest.mark.slow
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
    db = CoinsumDatabase(database=str(tmp_path / "c.duckdb"), wait_seconds=1)
    log = logging.getLogger("test")
    write_day(db, log)
    holder, _ = hold(tmp_path / "c.duckdb", 120)
    try:
        with caplog.at_level(logging.WARNING), pytest.raises(DatabaseHeld) as failed:
            write_day(db, log)
        assert f"PID {holder.pid}" in caplog.text, "the wait names who holds the file"
        assert f"is held by PID {holder.pid} (" in str(failed.value)
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
    assert "waiting up to 60 s for" in caplog.text
    with duckdb.connect(str(snapshot_path(db.database)), read_only=True) as conn:
        assert counts(conn) == (48, 48, 48)


@pytest.mark.slow
def test_a_run_on_a_held_file_fails_once_naming_the_holder_without_retries(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the daemon's runs meet: a failed run saying who holds the file, not a run that
    waits and retries for minutes."""
    monkeypatch.setenv("COINSUM_DB_WAIT_SECONDS", "1")
    assert run_slots([beijing("2026-01-05 10:00")], pipeline.instance).success
    holder, _ = hold(pipeline.db, 120, mode="read_write")
    try:
        outcome = run_slots([beijing("2026-01-05 10:30")], pipeline.instance)  # retries allowed
    finally:
        holder.kill()
        holder.wait()
    assert not outcome.success
    assert f"is held by PID {holder.pid} (" in outcome.error
    assert "coinsum.read.duckdb instead" in outcome.error
    retried = pipeline.instance.all_logs(outcome.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
    assert retried == [], "a held file is not a transient fault"
    assert pipeline.query("SELECT count(*) FROM coin_sum") == [(1,)]


@pytest.mark.slow
def test_backfill_on_a_held_file_exits_at_once_then_fills_the_day_once_it_is_closed(
    pipeline: Pipeline,
) -> None:
    coinsum = [str(Path(sys.executable).parent / "coinsum"), "backfill"]
    first_day = ["--from", "2026-01-05", "--to", "2026-01-05"]
    next_day = ["--from", "2026-01-06", "--to", "2026-01-06"]
    assert subprocess.run([*coinsum, *first_day], capture_output=True).returncode == 0
    before = table_rows(pipeline.db)
    holder, _ = hold(pipeline.db, 300, mode="read_write")  # a user's duckdb.connect()
    try:
        held = subprocess.run([*coinsum, *next_day], capture_output=True, text=True, timeout=180)
    finally:
        holder.kill()
        holder.wait()
    assert held.returncode != 0
    last_lines = held.stderr.strip().splitlines()[-1]
    assert f"PID {holder.pid}" in last_lines and "coinsum.read.duckdb instead" in last_lines
    assert table_rows(pipeline.db) == before, "the stored day is exactly as it was"

    assert subprocess.run([*coinsum, *next_day], capture_output=True).returncode == 0
    after = pipeline.query("SELECT trade_date, count(*) FROM coin_prices GROUP BY 1 ORDER BY 1")
    assert [(str(day), n) for day, n in after] == [("2026-01-05", 1296), ("2026-01-06", 1296)]
    assert table_rows(pipeline.db)["2026-01-05"] == before["2026-01-05"]


def table_rows(db: Path) -> dict[str, tuple[list, list]]:
    """Every row of ``coin_prices`` and ``coin_sum`` by Beijing day, as stored."""
    with duckdb.connect(str(db), read_only=True) as conn:
        distinct = conn.execute("SELECT DISTINCT trade_date FROM coin_sum").fetchall()
        days = [str(d) for (d,) in distinct]
        return {
            day: (
                conn.execute(
                    "SELECT * FROM coin_prices WHERE trade_date = ? ORDER BY ALL", [day]
                ).fetchall(),
                conn.execute(
                    "SELECT * FROM coin_sum WHERE trade_date = ? ORDER BY ALL", [day]
                ).fetchall(),
            )
            for day in days
        }
