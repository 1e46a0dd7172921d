"""What the command line reports about the stored data: coverage per day, a range's counts, the
basket history. Read from a connection the caller opened on the readers' snapshot."""

from __future__ import annotations

from datetime import date, datetime

import duckdb
import pandas as pd


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


def slots_stored(conn: duckdb.DuckDBPyConnection, first: date, last: date) -> int:
    """How many slots of Beijing days ``first``..``last`` are stored."""
    (slots,) = conn.execute(
        "SELECT count(*) FROM coin_sum WHERE trade_date BETWEEN ? AND ?", [first, last]
    ).fetchone()
    return slots


def coverage(
    conn: duckdb.DuckDBPyConnection, first: date | None, last: date | None
) -> tuple[pd.DataFrame, datetime | None]:
    """The ``daily_coverage`` rows of the stored days within ``first``..``last`` (open ends: no
    bound), and the newest slot among them."""
    bounds = [first or date.min, last or date.max]
    frame = conn.execute(
        "SELECT * FROM daily_coverage WHERE trade_date BETWEEN ? AND ? ORDER BY trade_date", bounds
    ).fetchdf()
    (newest,) = conn.execute(
        "SELECT max(slot_start) FROM coin_sum WHERE trade_date BETWEEN ? AND ?", bounds
    ).fetchone()
    return frame, newest


def basket_history(conn: duckdb.DuckDBPyConnection) -> pd.DataFrame:
    """Each recorded basket: from which day, how many coins, which, the one before, when."""
    return conn.execute(
        "SELECT effective_from AS from_day, len(string_split(coins, ',')) AS coins, "
        "coins AS basket, previous, recorded_at FROM baskets ORDER BY 1"
    ).fetchdf()
