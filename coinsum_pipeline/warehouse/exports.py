"""The CSV exports of docs/numbers.md "Exports": what Excel users open, with the headers their
spreadsheets already use, in UTF-8 with a BOM so Excel reads the Chinese headers right.

- full data, one row per (slot, coin): ``日期, 时间, 时间戳, 币种, 基准价格, 当前价格, 涨跌幅``
- the sum, one row per slot: ``日期, 时间, 时间戳, 27币涨跌幅总和, 报告币数``, then the breadth:
  ``上涨币数, 下跌币数, 持平币数, 最强币种, 最强涨跌幅, 最弱币种, 最弱涨跌幅, 涨跌幅中位数``
- missing values, one row per (slot, coin): ``日期, 时间, 币种, 原因``
- the day table, one row per slot: ``日期, 时间``, a column per coin, ``27币涨跌幅总和``

All read the readers' snapshot, so an export never waits for a run or holds one up. Reading and
drawing are apart: an export's rows are read in one go, and the drawing, most of its time, can
then run in another process, so a range of days is drawn on every core.
"""

from __future__ import annotations

import multiprocessing
import os
import threading
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass
from datetime import date
from multiprocessing import forkserver
from pathlib import Path

import duckdb
import pandas as pd

from coinsum_pipeline.core.basket import ordered_union
from coinsum_pipeline.core.slots import days_in
from coinsum_pipeline.warehouse.charts import (
    Curve,
    Palette,
    curve_image,
    half_size,
    preview_markdown,
    save_png,
)
from coinsum_pipeline.warehouse.heatmap import PREVIEW_TABLE, draw_day_table

SUM_HEADER = "27币涨跌幅总和"
QUERIES = {
    "full": """
        SELECT strftime(trade_date, '%Y-%m-%d') AS 日期, slot_time AS 时间, slot_ts_ms AS 时间戳,
               coin AS 币种, base_price AS 基准价格, price AS 当前价格, pct_change AS 涨跌幅
        FROM coin_prices WHERE trade_date BETWEEN ? AND ? ORDER BY slot_start, coin
    """,
    "sum": f"""
        SELECT strftime(trade_date, '%Y-%m-%d') AS 日期, slot_time AS 时间, slot_ts_ms AS 时间戳,
               sum_pct AS "{SUM_HEADER}", coins_reported AS 报告币数,
               coins_up AS 上涨币数, coins_down AS 下跌币数, coins_flat AS 持平币数,
               best_coin AS 最强币种, best_pct AS 最强涨跌幅, worst_coin AS 最弱币种,
               worst_pct AS 最弱涨跌幅, median_pct AS 涨跌幅中位数
        FROM slot_sums WHERE trade_date BETWEEN ? AND ? ORDER BY slot_start
    """,
    "missing": """
        SELECT strftime(trade_date, '%Y-%m-%d') AS 日期, slot_time AS 时间, coin AS 币种,
               reason AS 原因
        FROM missing_values WHERE trade_date BETWEEN ? AND ? ORDER BY slot_start, coin
    """,
}


@dataclass(frozen=True)
class Export:
    """The files written for a day or a range, and their row counts by kind."""

    folder: Path
    files: dict[str, Path]
    rows: dict[str, int]
    previews: dict[str, str]  # a day's curve, day table and sums as Markdown, for its page


def read_export(
    conn: duckdb.DuckDBPyConnection, kind: str, first: date, last: date
) -> pd.DataFrame:
    """One export's rows for Beijing days ``first``..``last``, with its Chinese headers."""
    return conn.execute(QUERIES[kind], [first, last]).fetchdf()


def day_coins(conn: duckdb.DuckDBPyConnection, day: date) -> tuple[str, ...]:
    """The coins of ``day``'s stored slots' baskets: the day table's columns, whatever basket
    later days have."""
    rows = conn.execute(
        "SELECT basket FROM coin_sum WHERE trade_date = ? GROUP BY basket ORDER BY min(slot_start)",
        [day],
    ).fetchall()
    return ordered_union(basket.split(",") for (basket,) in rows)


def read_day_table(conn: duckdb.DuckDBPyConnection, day: date) -> pd.DataFrame:
    """The 48 x coins table of one day's % changes, plus the sum, one row per stored slot; a
    column per coin of the day's basket, even one with no value."""
    coins = day_coins(conn, day)
    frame = read_export(conn, "full", day, day)
    table = frame.pivot_table(index="时间", columns="币种", values="涨跌幅", aggfunc="first")
    table = table.reindex(columns=list(coins))
    sums = read_export(conn, "sum", day, day).set_index("时间")[SUM_HEADER]
    table = table.reindex(sums.index)
    table[SUM_HEADER] = sums
    table.insert(0, "日期", day.isoformat())
    return table.reset_index()[["日期", "时间", *table.columns.drop("日期")]]


PREVIEW_COLUMNS = [
    "时间", SUM_HEADER, "报告币数", "上涨币数", "下跌币数",
    "最强币种", "最强涨跌幅", "最弱币种", "最弱涨跌幅", "涨跌幅中位数",
]  # fmt: skip


def preview(sums: pd.DataFrame) -> pd.DataFrame:
    """A day's sums as people read them: the columns that say something on one day's page, the
    percentages to 2 decimals (the CSVs keep every digit: they are data)."""
    return sums[PREVIEW_COLUMNS].round(2)


def markdown_table(frame: pd.DataFrame) -> str:
    """A frame as a Markdown table, for previews in Dagster metadata."""
    lines = ["| " + " | ".join(map(str, frame.columns)) + " |"]
    lines.append("|" + "---|" * len(frame.columns))
    for row in frame.itertuples(index=False):
        cells = ("" if pd.isna(v) else f"{v:.2f}" if isinstance(v, float) else str(v) for v in row)
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def csv_bytes(frame: pd.DataFrame) -> bytes:
    """UTF-8 with a BOM, so Excel opens the Chinese headers without a text-import wizard: the
    bytes of every CSV coinsum writes or serves."""
    return frame.to_csv(index=False, lineterminator="\n").encode("utf-8-sig")


def write_csv(frame: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    staging = path.with_name(f".{path.name}.tmp")
    staging.write_bytes(csv_bytes(frame))
    staging.replace(path)  # a user with the old file open in a viewer keeps a whole file
    return path


def export_stem(first: date, last: date) -> str:
    """What names an export's files: ``2026-01-05`` for a day, ``2026-01-03_2026-01-16`` for a
    range."""
    return first.isoformat() if first == last else f"{first.isoformat()}_{last.isoformat()}"


def read_day_tables(conn: duckdb.DuckDBPyConnection, first: date, last: date) -> pd.DataFrame:
    """The day tables of ``first``..``last`` stacked; days with different baskets stack into
    the union of their columns, the sum kept last."""
    tables = pd.concat([read_day_table(conn, day) for day in days_in(first, last)])
    return tables.reset_index(drop=True)[[*tables.columns.drop(SUM_HEADER), SUM_HEADER]]


CSV_KINDS = (*QUERIES, "day_table")


def read_csv(conn: duckdb.DuckDBPyConnection, kind: str, first: date, last: date) -> pd.DataFrame:
    """The rows of one of the CSVs (``CSV_KINDS``) of days ``first``..``last``."""
    if kind == "day_table":
        return read_day_tables(conn, first, last)
    return read_export(conn, kind, first, last)


@dataclass(frozen=True)
class ExportData:
    """Everything an export of Beijing days ``first``..``last`` shows, as read from DuckDB."""

    first: date
    last: date
    frames: dict[str, pd.DataFrame]  # by kind of CSV, as QUERIES reads them
    incomplete: pd.Series  # per slot of the sums: fewer coins reported than its basket has
    day_table: pd.DataFrame  # the days' tables stacked, the sum column last


def read_days(conn: duckdb.DuckDBPyConnection, first: date, last: date) -> ExportData:
    frames = {kind: read_export(conn, kind, first, last) for kind in QUERIES}
    incomplete = conn.execute(
        "SELECT NOT complete FROM slot_sums WHERE trade_date BETWEEN ? AND ? ORDER BY slot_start",
        [first, last],
    ).fetchdf()
    return ExportData(
        first, last, frames, incomplete.iloc[:, 0], read_day_tables(conn, first, last)
    )


def write_export(data: ExportData, folder: Path, palette: Palette) -> Export:
    """Write the CSVs and charts of ``data`` into ``folder``.

    Every export has the full data, sums, missing values and day tables (a range's stacked day
    by day) as CSV, and the curve (a range's with day boundaries marked); one day also gets the
    colour image of its day table and the previews of its page.
    """
    first, last = data.first, data.last
    stem = export_stem(first, last)
    title = first.isoformat() if first == last else f"{first.isoformat()} .. {last.isoformat()}"
    files = {
        kind: write_csv(frame, folder / f"{kind}_{stem}.csv") for kind, frame in data.frames.items()
    }
    rows = {kind: len(frame) for kind, frame in data.frames.items()}
    sums = data.frames["sum"]
    curve = Curve(
        days=sums["日期"].tolist(),
        times=sums["时间"].tolist(),
        sums=sums[SUM_HEADER],
        up=sums["上涨币数"],
        down=sums["下跌币数"],
        incomplete=data.incomplete,
    )
    drawn = curve_image(curve, title, palette)
    files["curve"] = save_png(drawn, folder / f"curve_{stem}.png")
    files["day_table"] = write_csv(data.day_table, folder / f"day_table_{stem}.csv")
    rows["day_table"] = len(data.day_table)
    previews: dict[str, str] = {}
    if first == last:  # a colour grid of 48 rows reads well; of hundreds, it does not
        body = data.day_table.set_index("时间")
        changes, day_sums = body.drop(columns=["日期", SUM_HEADER]), body[SUM_HEADER]
        files["day_table_image"] = save_png(
            draw_day_table(changes, day_sums, title, palette).image,
            folder / f"day_table_{stem}.png",
        )
        small_table = draw_day_table(changes, day_sums, title, palette, PREVIEW_TABLE).image
        previews = {
            "curve": preview_markdown(half_size(drawn), "27-coin sum"),
            "day_table": preview_markdown(small_table, "day table"),
            "sums": markdown_table(preview(sums)),
        }
    return Export(folder, files, rows, previews)


def write_range_files(
    conn: duckdb.DuckDBPyConnection,
    first: date,
    last: date,
    folder: Path,
    palette: Palette,
) -> Export:
    """Write the CSVs and charts of days ``first``..``last`` into ``folder``."""
    return write_export(read_days(conn, first, last), folder, palette)


def write_exports(exports: Sequence[tuple[ExportData, Path]], palette: Palette) -> list[Export]:
    """Write several exports (data, folder), drawn in parallel on every core when there are
    several: drawing is most of an export's time, and each export is independent. The biggest
    (a range's) starts first, so it does not finish last alone.

    The workers come from a fork server that has imported this module once, so they start in
    milliseconds without inheriting the threads of the Dagster run that asks. A process that
    may not start others (a run in a Celery worker's pool: docs/operations.md#workers) draws
    them itself, one after another.
    """
    if len(exports) == 1 or multiprocessing.current_process().daemon:
        return [write_export(*export, palette) for export in exports]
    workers = min(len(exports), os.cpu_count() or 1)
    biggest_first = sorted(exports, key=lambda e: len(e[0].frames["full"]), reverse=True)
    with ProcessPoolExecutor(workers, mp_context=drawing_processes()) as pool:
        futures = {id(e): pool.submit(write_export, *e, palette) for e in biggest_first}
        return [futures[id(e)].result() for e in exports]


def drawing_processes() -> multiprocessing.context.BaseContext:
    """Where ``write_exports`` draws: a fork server preloaded with this module."""
    context = multiprocessing.get_context("forkserver")
    context.set_forkserver_preload([__name__])
    return context


def start_drawing_processes() -> None:
    """Start the fork server in the background now (it spends about a second importing), so the
    export run at the end of a backfill finds it ready."""
    drawing_processes()
    threading.Thread(target=forkserver.ensure_running, daemon=True).start()
