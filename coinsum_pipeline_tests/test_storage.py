"""The DuckDB writes: exact slot replacement, atomicity, NULL sums, and queued writers."""

from __future__ import annotations

import logging
import threading
import time
from pathlib import Path

import duckdb
import pandas as pd
import pytest

from coinsum_pipeline.compute import SlotTables, compute_slot_tables
from coinsum_pipeline.fetch import CoinFetch
from coinsum_pipeline.okx import Candle
from coinsum_pipeline.partitions import SLOT, epoch_ms, slots_in
from coinsum_pipeline.storage import StorageError, ensure_schema, replace_slots, writer_lock
from coinsum_pipeline_tests.conftest import beijing

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
