"""DuckDB beside PostgreSQL tables for coinsum's values: the warehouse question of
docs/scale.md, measured. The same ``coin_prices`` rows (a year of 270 coins by default, made up
in coinsum's schema) go into a DuckDB file and into a table on the local PostgreSQL
(``scripts/postgres``), and each is timed at what coinsum does with them: loading them, the
space they take, writing one slot (its rows replaced in one transaction, as a run does), a
day's 48 x N table (the board's and the exports' read), the year's curve of the sum (a sum per
slot over every row), and, on PostgreSQL, two writers at once (DuckDB has one writer per file).

    .venv/bin/python bench/warehouse.py                    # 270 coins, 365 days
    .venv/bin/python bench/warehouse.py --coins 27 --days 14
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from datetime import date, datetime, timedelta
from pathlib import Path

import duckdb
import pandas as pd
import psycopg2
from psycopg2.extras import execute_values

sys.path.insert(0, str(Path(__file__).resolve().parent))
from postgres import SOCKET, database_bytes, drop_database, new_database

from coinsum_pipeline.warehouse.schema import TABLES

FIRST_DAY = date(2025, 1, 1)
COLUMNS = [
    "slot_start", "trade_date", "slot_time", "slot_ts_ms", "coin", "inst_id",
    "base_price", "price", "pct_change",
]  # fmt: skip
INSERT = f"INSERT INTO coin_prices ({', '.join(COLUMNS)}) VALUES "
# DuckDB's DOUBLE is PostgreSQL's DOUBLE PRECISION; the rest of the DDL is the same in both.
PG_DDL = TABLES["coin_prices"].replace("DOUBLE ", "DOUBLE PRECISION ")
MADE_UP = """
    {insert}
    SELECT s, s::DATE, strftime(s, '%H:%M'), epoch_ms(s) - 8 * 3600 * 1000,
           'C' || lpad(c::VARCHAR, 3, '0'), 'C' || lpad(c::VARCHAR, 3, '0') || '-USDT-SWAP',
           100 + c, 100 + c + (random() - 0.5) * 4, (random() - 0.5) * 4
    FROM generate_series(TIMESTAMP '{first}', TIMESTAMP '{last}', INTERVAL 30 MINUTE) t(s),
         generate_series(1, {coins}) k(c)
"""
# By the primary key's leading column, which both can search.
DAY_TABLE = (
    "SELECT slot_time, coin, base_price, price, pct_change FROM coin_prices "
    "WHERE slot_start >= TIMESTAMP '{day}' AND slot_start < TIMESTAMP '{next_day}' "
    "ORDER BY slot_time, coin"
)
YEAR_CURVE = "SELECT slot_start, sum(pct_change) FROM coin_prices GROUP BY 1 ORDER BY 1"


def median_seconds(action: Callable[[], object], times: int) -> float:
    took = []
    for _ in range(times):
        start = time.perf_counter()
        action()
        took.append(time.perf_counter() - start)
    return statistics.median(took)


def slot_rows(slot: datetime, coins: int) -> list[tuple]:
    """A slot's rows as a run writes them (the same made-up coins)."""
    ms = int((slot - datetime(1970, 1, 1)).total_seconds() * 1000) - 8 * 3600 * 1000
    return [
        (
            slot,
            slot.date(),
            slot.strftime("%H:%M"),
            ms,
            f"C{c:03d}",
            f"C{c:03d}-USDT-SWAP",
            100.0 + c,
            101.0 + c,
            100.0 / (100 + c),  # (price - base) / base * 100
        )
        for c in range(1, coins + 1)
    ]


def duck_write(conn: duckdb.DuckDBPyConnection, slot: datetime, coins: int) -> None:
    """As ``warehouse/database.py`` writes: the slot's rows replaced from a registered frame."""
    frame = pd.DataFrame(slot_rows(slot, coins), columns=COLUMNS)
    conn.execute("BEGIN")
    conn.execute("DELETE FROM coin_prices WHERE slot_start = ?", [slot])
    conn.register("incoming", frame)
    conn.execute("INSERT INTO coin_prices BY NAME SELECT * FROM incoming")
    conn.unregister("incoming")
    conn.execute("COMMIT")


def pg_write(conn: psycopg2.extensions.connection, slot: datetime, coins: int) -> None:
    with conn, conn.cursor() as cursor:
        cursor.execute("DELETE FROM coin_prices WHERE slot_start = %s", [slot])
        execute_values(cursor, INSERT + "%s", slot_rows(slot, coins))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--coins", type=int, default=270)
    parser.add_argument("--days", type=int, default=365)
    args = parser.parse_args()
    last_slot = datetime.combine(FIRST_DAY + timedelta(days=args.days), datetime.min.time())
    last_slot -= timedelta(minutes=30)
    values = args.days * 48 * args.coins
    print(f"{args.coins} coins x {args.days} days: {values:,} values")
    work = Path(tempfile.mkdtemp(prefix="coinsum-warehouse-"))
    duck = duckdb.connect(str(work / "coinsum.duckdb"))
    duck.execute(TABLES["coin_prices"])
    start = time.perf_counter()
    made_up = MADE_UP.format(
        insert=INSERT.removesuffix(" VALUES "), first=FIRST_DAY, last=last_slot, coins=args.coins
    )
    duck.execute(made_up)
    duck.execute("CHECKPOINT")
    duck_load = time.perf_counter() - start
    duck.execute(f"COPY coin_prices TO '{work / 'rows.csv'}' (HEADER false)")

    name, _ = new_database("coinsum_warehouse")
    try:
        pg = psycopg2.connect(dbname=name, host=SOCKET)
        with pg, pg.cursor() as cursor:
            cursor.execute(PG_DDL)
        start = time.perf_counter()
        with pg, pg.cursor() as cursor, (work / "rows.csv").open() as rows:
            cursor.copy_expert("COPY coin_prices FROM STDIN (FORMAT csv)", rows)
            cursor.execute("ANALYZE coin_prices")
        pg_load = time.perf_counter() - start
        with pg.cursor() as cursor:
            cursor.execute("SELECT pg_total_relation_size('coin_prices')")
            pg_bytes = cursor.fetchone()[0]

        day = FIRST_DAY + timedelta(days=args.days // 2)
        slots = [
            datetime.combine(day, datetime.min.time()) + timedelta(minutes=30 * i)
            for i in range(48)
        ]
        slot_iter = iter(slots * 100)

        def pg_query(sql: str) -> list:
            with pg.cursor() as cursor:
                cursor.execute(sql)
                return cursor.fetchall()

        the_day = DAY_TABLE.format(day=day, next_day=day + timedelta(days=1))

        def in_ms(action: Callable[[], object]) -> str:
            return f"{median_seconds(action, 20) * 1000:.0f} ms"

        def in_s(action: Callable[[], object]) -> str:
            return f"{median_seconds(action, 5):.2f} s"

        duck_mb = (work / "coinsum.duckdb").stat().st_size / 1e6
        rows = [
            ("load (DuckDB: made up in place; PostgreSQL: COPY)", f"{duck_load:.1f} s",
             f"{pg_load:.1f} s"),
            ("on disk (PostgreSQL: the table, its index; the database)", f"{duck_mb:.1f} MB",
             f"{pg_bytes / 1e6:.1f} MB; {database_bytes(name) / 1e6:.1f} MB"),
            ("a slot written (median of 20)",
             in_ms(lambda: duck_write(duck, next(slot_iter), args.coins)),
             in_ms(lambda: pg_write(pg, next(slot_iter), args.coins))),
            ("a day's table (median of 20)", in_ms(lambda: duck.execute(the_day).fetchall()),
             in_ms(lambda: pg_query(the_day))),
            ("the whole range's sum curve (median of 5)",
             in_s(lambda: duck.execute(YEAR_CURVE).fetchall()), in_s(lambda: pg_query(YEAR_CURVE))),
        ]  # fmt: skip

        def writer(first: int) -> None:
            conn = psycopg2.connect(dbname=name, host=SOCKET)
            for slot in slots[first : first + 24]:
                pg_write(conn, slot, args.coins)
            conn.close()

        start = time.perf_counter()
        writer(0)
        writer(24)
        serial = time.perf_counter() - start
        threads = [threading.Thread(target=writer, args=(first,)) for first in (0, 24)]
        start = time.perf_counter()
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        both = time.perf_counter() - start
        rows.append(
            (
                "48 slots by two writers: one after the other; at once",
                "one writer per file",
                f"{serial:.2f} s; {both:.2f} s",
            )
        )
        pg.close()
    finally:
        drop_database(name)
        duck.close()
    width = max(len(row[0]) for row in rows)
    print(f"{'':{width}}  {'DuckDB':>12}  PostgreSQL")
    for what, in_duck, in_pg in rows:
        print(f"{what:{width}}  {in_duck:>12}  {in_pg}")


if __name__ == "__main__":
    main()
