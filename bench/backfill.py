"""Benchmark: backfill a date range for the whole basket against the fake OKX at OKX's real
rate limits, through the same Dagster job and instance storage the CLI uses.

Prints wall time, the requests made per endpoint, the rate-limit floor for those requests (the
least time OKX's per-IP limits allow for them: requests x window / limit), their ratio, the
time spent fetching alone, the time of the exports `coinsum backfill` writes after it, and peak
memory.

    .venv/bin/python bench/backfill.py                       # 2026-01-03 .. 2026-01-16, 27 coins
    .venv/bin/python bench/backfill.py --history-page-cap 100
    .venv/bin/python bench/backfill.py --from 2026-01-03 --to 2026-12-31   # about a year
    .venv/bin/python bench/backfill.py --storage both   # SQLite, then PostgreSQL, and the ratio
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from datetime import date
from pathlib import Path

from postgres import new_database

from coinsum_pipeline.okx.client import RATE_LIMITS
from coinsum_pipeline.okx.fake import HISTORY_CANDLES, FakeOKX


def floor_seconds(requests: dict[str, int]) -> float:
    return sum(n * RATE_LIMITS[path][1] / RATE_LIMITS[path][0] for path, n in requests.items())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="first", default="2026-01-03")
    parser.add_argument("--to", dest="last", default="2026-01-16")
    parser.add_argument("--history-page-cap", type=int, default=300, choices=(100, 300))
    parser.add_argument(
        "--storage",
        choices=("sqlite", "postgres", "both"),
        default="sqlite",
        help="the Dagster instance's storage; both: SQLite, then PostgreSQL, and their ratio",
    )
    args = parser.parse_args()
    first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
    storages = ["sqlite", "postgres"] if args.storage == "both" else [args.storage]
    walls = {storage: run(first, last, args.history_page_cap, storage) for storage in storages}
    if len(walls) == 2:
        print(f"postgres / sqlite wall: {walls['postgres'] / walls['sqlite']:.2f}")


def run(first: date, last: date, page_cap: int, storage: str) -> float:
    """One backfill of ``first``..``last`` on a new instance; prints its figures, returns its
    wall time."""
    work = Path(tempfile.mkdtemp(prefix="coinsum-bench-"))
    okx = FakeOKX()  # OKX's published rate limits, enforced
    okx.page_caps[HISTORY_CANDLES] = page_cap
    os.environ.update(
        OKX_BASE_URL=okx.start(),
        COINSUM_DB=str(work / "coinsum.duckdb"),
        COINSUM_EXPORTS=str(work / "exports"),
        DAGSTER_HOME=str(work / "dagster_home"),
    )
    os.environ.pop("COINSUM_COINS", None)
    os.environ.pop("COINSUM_PG_URL", None)
    if storage == "postgres":
        os.environ["COINSUM_PG_URL"] = new_database("coinsum_bench")[1]

    from dagster import DagsterInstance

    from coinsum_pipeline import clock
    from coinsum_pipeline.backfill import backfill, export_range, plan
    from coinsum_pipeline.core.basket import DEFAULT_COINS
    from coinsum_pipeline.core.slots import day_start
    from coinsum_pipeline.defs.resources import resolved
    from coinsum_pipeline.okx.client import OKXClient
    from coinsum_pipeline.okx.fetch import fetch_basket
    from coinsum_pipeline.settings import dagster_home
    from coinsum_pipeline.warehouse.database import range_summary

    dagster_home()
    now = clock.now()
    print(
        f"backfill {first} .. {last}, {len(DEFAULT_COINS)} coins, history page cap "
        f"{page_cap}, OKX rate limits {dict(RATE_LIMITS)}, instance on {storage}"
    )

    started = time.monotonic()
    with DagsterInstance.get() as instance:
        outcomes = list(backfill(first, last, now, instance))
        wall = time.monotonic() - started
        export_started = time.monotonic()
        exported = export_range(first, min(last, now.date()), instance)
        export_wall = time.monotonic() - export_started
    served = {path: okx.request_count(path) for path in RATE_LIMITS if okx.request_count(path)}
    tripped = okx.rate_limited

    with resolved("duckdb") as database, database.read() as conn:
        stored = range_summary(conn, day_start(first), day_start(last).replace(hour=23, minute=30))

    # The same slot candles fetched alone, outside Dagster: how much of the wall time is OKX's.
    runs = plan(first, last, now)
    slots = sum(len(run) for run in runs)
    client = OKXClient(os.environ["OKX_BASE_URL"])
    fetch_started = time.monotonic()
    for run in runs:
        fetch_basket(client, DEFAULT_COINS, run)
    fetch_only = time.monotonic() - fetch_started
    okx.stop()

    floor = floor_seconds(served)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"runs:            {len(outcomes)} ({sum(o.success for o in outcomes)} succeeded)")
    print(
        f"slots:           {slots}  values {stored['values']}  sums {stored['sums']}  "
        f"missing {stored['missing']}"
    )
    print(f"wall time:       {wall:.1f} s  ({slots / wall:.1f} slots/s)")
    print(f"requests:        {sum(served.values())}  {served}  (429s: {tripped})")
    print(f"rate-limit floor {floor:.2f} s  ->  wall / floor = {wall / floor:.2f}")
    print(
        f"target:          2 x floor + 60 s = {2 * floor + 60:.1f} s  "
        f"({'met' if wall <= 2 * floor + 60 else 'MISSED'})"
    )
    print(
        f"fetch alone:     {fetch_only:.1f} s (slot candles); the other {wall - fetch_only:.1f} s: "
        "Dagster's bookkeeping, the check steps (with their 1D requests), DuckDB"
    )
    print(
        f"exports:         {export_wall:.1f} s for {(last - first).days + 1} days "
        f"(CSVs, day tables, charts; one export_days run, "
        f"{'ok' if exported.success else 'FAILED'}), after the backfill's wall time"
    )
    print(f"peak memory:     {peak_mb:.0f} MB (this process, so far)")
    return wall


if __name__ == "__main__":
    main()
