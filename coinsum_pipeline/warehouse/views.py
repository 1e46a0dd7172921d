"""SQL views for the questions users ask most, created in the DuckDB file on every write (so the
readers' snapshot has them too).

- ``day_table``: one row per (day, slot) with each coin's % change as a column, plus the sum:
  the 48 x 27 table traders read. A column per coin any recorded basket ever had, so a basket
  change never takes a column away from stored days; a coin not in a slot's basket is NULL.
- ``slot_sums``: the 27-coin sum per slot with its coverage, and its breadth: how many coins
  are up, down and flat since 00:00, the best and the worst coin, the median change.
- ``daily_coverage``: per Beijing day, slots stored and complete, values, and missing values by
  reason.
- ``latest_slot``: every coin of the newest stored slot, with the sum.
- ``sums_between(first, last)``: a table macro, the sums of Beijing days ``first``..``last``.
"""

from __future__ import annotations

from collections.abc import Sequence

import duckdb

from coinsum_pipeline.core.reasons import MissingReason

SUM_COLUMN = "sum_pct"


def _quoted(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def create_views(conn: duckdb.DuckDBPyConnection, coins: Sequence[str]) -> None:
    """(Re)create the views; ``coins`` are the day table's columns, in basket order: every coin
    of the file's basket history."""
    columns = ",\n".join(
        f"max(p.pct_change) FILTER (WHERE p.coin = {_literal(coin)}) AS {_quoted(coin)}"
        for coin in coins
    )
    conn.execute(
        f"""
        CREATE OR REPLACE VIEW day_table AS
        SELECT s.trade_date, s.slot_time, s.slot_start,
               {columns},
               any_value(s.sum_pct) AS {SUM_COLUMN},
               any_value(s.coins_reported) AS coins_reported
        FROM coin_sum s LEFT JOIN coin_prices p USING (slot_start)
        GROUP BY s.trade_date, s.slot_time, s.slot_start
        """
    )
    conn.execute(
        """
        CREATE OR REPLACE VIEW slot_sums AS
        WITH breadth AS (
            SELECT slot_start,
                   count(*) FILTER (WHERE pct_change > 0) AS coins_up,
                   count(*) FILTER (WHERE pct_change < 0) AS coins_down,
                   count(*) FILTER (WHERE pct_change = 0) AS coins_flat,
                   arg_max(coin, pct_change) AS best_coin,
                   max(pct_change) AS best_pct,
                   arg_min(coin, pct_change) AS worst_coin,
                   min(pct_change) AS worst_pct,
                   median(pct_change) AS median_pct
            FROM coin_prices GROUP BY slot_start
        )
        SELECT s.trade_date, s.slot_time, s.slot_start, s.slot_ts_ms, s.sum_pct,
               s.coins_reported, s.coins_expected, s.complete, s.basket,
               coalesce(b.coins_up, 0) AS coins_up, coalesce(b.coins_down, 0) AS coins_down,
               coalesce(b.coins_flat, 0) AS coins_flat, b.best_coin, b.best_pct,
               b.worst_coin, b.worst_pct, b.median_pct
        FROM coin_sum s LEFT JOIN breadth b USING (slot_start)
        """
    )
    by_reason = ",\n".join(
        f"count(*) FILTER (WHERE reason = {_literal(r)}) AS {r}" for r in MissingReason
    )
    reason_columns = ",\n".join(f"coalesce(any_value(m.{r}), 0) AS {r}" for r in MissingReason)
    conn.execute(
        f"""
        CREATE OR REPLACE VIEW daily_coverage AS
        WITH missing AS (
            SELECT trade_date,
                   count(*) AS missing_values,
                   {by_reason}
            FROM missing_values GROUP BY trade_date
        )
        SELECT s.trade_date,
               count(*) AS slots_stored,
               count(*) FILTER (WHERE s.complete) AS slots_complete,
               sum(s.coins_reported)::BIGINT AS coin_values,
               coalesce(any_value(m.missing_values), 0) AS missing_values,
               {reason_columns}
        FROM coin_sum s LEFT JOIN missing m USING (trade_date)
        GROUP BY s.trade_date
        """
    )
    conn.execute(
        """
        CREATE OR REPLACE VIEW latest_slot AS
        SELECT p.trade_date, p.slot_time, p.coin, p.base_price, p.price, p.pct_change,
               s.sum_pct, s.coins_reported
        FROM coin_prices p JOIN coin_sum s USING (slot_start)
        WHERE p.slot_start = (SELECT max(slot_start) FROM coin_sum)
        """
    )
    conn.execute(
        """
        CREATE OR REPLACE MACRO sums_between(first_day, last_day) AS TABLE
        SELECT * FROM slot_sums
        WHERE trade_date BETWEEN CAST(first_day AS DATE) AND CAST(last_day AS DATE)
        ORDER BY slot_start
        """
    )
