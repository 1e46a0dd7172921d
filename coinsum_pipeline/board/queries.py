"""What the board's JSON answers hold, read from the readers' snapshot.

Every number is the stored one, at full precision: the page rounds for display, scripts get
what SQL gets. The names are the columns of ``slot_sums``, ``coin_prices`` and
``missing_values``, so a script written against the API reads like one written in SQL.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

import duckdb

from coinsum_pipeline.warehouse.exports import day_coins

SLOT_TEXT = "strftime(slot_start, '%Y-%m-%d %H:%M') AS slot"
SUM_COLUMNS = (
    "slot_ts_ms, sum_pct, coins_reported, coins_expected, complete, coins_up, coins_down, "
    "coins_flat, best_coin, best_pct, worst_coin, worst_pct, median_pct"
)


def _records(cursor: duckdb.DuckDBPyConnection) -> list[dict[str, Any]]:
    names = [column[0] for column in cursor.description]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def stored_days(conn: duckdb.DuckDBPyConnection) -> tuple[date, date] | None:
    """The first and last Beijing day with a stored slot, or None for an empty file."""
    first, last = conn.execute("SELECT min(trade_date), max(trade_date) FROM coin_sum").fetchone()
    return None if first is None else (first, last)


def newest_slot(conn: duckdb.DuckDBPyConnection) -> datetime | None:
    """The newest stored slot (naive Beijing wall-clock time), or None for an empty file."""
    return conn.execute("SELECT max(slot_start) FROM coin_sum").fetchone()[0]


def sums_json(conn: duckdb.DuckDBPyConnection, first: date, last: date) -> str:
    """One record per stored slot of Beijing days ``first``..``last``, oldest first (the curve,
    its breadth, its best and worst coin), as a JSON array. DuckDB writes it: for a year of
    slots, Python's dicts and ``json`` would be most of the answer's time; DuckDB writes each
    double as exactly as Python does."""
    return conn.execute(
        f"SELECT coalesce(to_json(list(t ORDER BY slot_ts_ms)), '[]')::VARCHAR FROM "
        f"(SELECT {SLOT_TEXT}, {SUM_COLUMNS} FROM sums_between(?, ?)) t",
        [first, last],
    ).fetchone()[0]


def slot(conn: duckdb.DuckDBPyConnection, start: datetime) -> dict[str, Any] | None:
    """The slot's sum and its basket coin by coin: the coins that reported, strongest first,
    and each missing coin with its reason. None when the slot is not stored."""
    found = _records(
        conn.execute(
            f"SELECT {SLOT_TEXT}, slot_ts_ms, sum_pct, coins_reported, coins_expected "
            "FROM coin_sum WHERE slot_start = ?",
            [start],
        )
    )
    if not found:
        return None
    coins = _records(
        conn.execute(
            "SELECT coin, base_price, price, pct_change FROM coin_prices WHERE slot_start = ? "
            "ORDER BY pct_change DESC, coin",
            [start],
        )
    )
    missing = _records(
        conn.execute(
            "SELECT coin, reason, detail FROM missing_values WHERE slot_start = ? ORDER BY coin",
            [start],
        )
    )
    return {**found[0], "coins": coins, "missing": missing}


def day_table(conn: duckdb.DuckDBPyConnection, day: date) -> dict[str, Any]:
    """The day's table: a column per coin of the day's basket, a row per stored slot with each
    coin's % change (null when missing, with its reason beside) and the sum."""
    coins = list(day_coins(conn, day))
    rows = _records(
        conn.execute(
            "SELECT slot_time AS time, slot_ts_ms, sum_pct, coins_reported, coins_expected "
            "FROM coin_sum WHERE trade_date = ? ORDER BY slot_start",
            [day],
        )
    )
    changes = {
        (time, coin): pct
        for time, coin, pct in conn.execute(
            "SELECT slot_time, coin, pct_change FROM coin_prices WHERE trade_date = ?", [day]
        ).fetchall()
    }
    missing: dict[str, dict[str, dict[str, str | None]]] = {}
    for time, coin, reason, detail in conn.execute(
        "SELECT slot_time, coin, reason, detail FROM missing_values WHERE trade_date = ?", [day]
    ).fetchall():
        missing.setdefault(time, {})[coin] = {"reason": reason, "detail": detail}
    for row in rows:
        row["pct_change"] = [changes.get((row["time"], coin)) for coin in coins]
        row["missing"] = missing.get(row["time"], {})
    return {"date": day.isoformat(), "coins": coins, "slots": rows}
