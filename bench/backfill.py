"""Benchmark: backfill a date range for the whole basket against the fake OKX at OKX's real
rate limits, through the same Dagster job and instance storage the CLI uses.

Prints wall time, the requests made per endpoint, the rate-limit floor for those requests (the
least time OKX's per-IP limits allow for them: each endpoint has its own limit, so the busiest
endpoint's requests x window / limit), their ratio, where the slot runs' time went (waiting for
OKX, Dagster writing its events, DuckDB, the rest), the time of the exports `coinsum backfill`
writes after it, end-to-end wall, and peak memory.

    .venv/bin/python bench/backfill.py                       # 2026-01-03 .. 2026-01-16, 27 coins
    .venv/bin/python bench/backfill.py --history-page-cap 100
    .venv/bin/python bench/backfill.py --from 2026-01-03 --to 2026-12-31   # about a year
    .venv/bin/python bench/backfill.py --storage both   # SQLite, then PostgreSQL, and the ratio
    .venv/bin/python bench/backfill.py --fetch-alone   # also the slot candles fetched alone
    .venv/bin/python bench/backfill.py --coins 270 --storage postgres   # a basket ten times larger

It also prints what the range leaves on disk: the DuckDB file (and its readers' snapshot), the
instance (the SQLite files in DAGSTER_HOME, or the PostgreSQL database) and the exports.
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import date
from pathlib import Path

from postgres import database_bytes, drop_database, new_database

from coinsum_pipeline.okx.client import RATE_LIMITS
from coinsum_pipeline.okx.fake import HISTORY_CANDLES, FakeOKX


def floor_seconds(requests: dict[str, int]) -> float:
    return max(n * RATE_LIMITS[path][1] / RATE_LIMITS[path][0] for path, n in requests.items())


class Stopwatch:
    """Time spent in chosen functions (and in ``with`` blocks of chosen context managers),
    by label: patched in for the benchmark only."""

    def __init__(self) -> None:
        self.seconds: Counter[str] = Counter()
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def add(self, label: str, started: float) -> None:
        with self._lock:
            self.seconds[label] += time.perf_counter() - started
            self.calls[label] += 1

    def time(self, owner: object, name: str, label: Callable[..., str] | str) -> None:
        original = getattr(owner, name)

        def timed(*args: object, **kwargs: object) -> object:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                self.add(label(*args, **kwargs) if callable(label) else label, started)

        setattr(owner, name, timed)

    def time_block(self, owner: object, name: str, label: str) -> None:
        original = getattr(owner, name)

        @contextmanager
        def timed(*args: object, **kwargs: object) -> Iterator[object]:
            started = time.perf_counter()
            try:
                with original(*args, **kwargs) as value:
                    yield value
            finally:
                self.add(label, started)

        setattr(owner, name, timed)


def event_label(instance: object, event: object, **_: object) -> str:
    kind = event.dagster_event_type  # type: ignore[attr-defined]
    return f"event {kind.value if kind else 'log message'}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--from", dest="first", default="2026-01-03")
    parser.add_argument("--to", dest="last", default="2026-01-16")
    parser.add_argument("--history-page-cap", type=int, default=300, choices=(100, 300))
    parser.add_argument(
        "--fetch-alone",
        action="store_true",
        help="afterwards, fetch the same slot candles again outside Dagster, timed",
    )
    parser.add_argument(
        "--coins",
        type=int,
        default=27,
        help="the basket's size: the default 27, then made-up coins the stand-in lists",
    )
    parser.add_argument(
        "--storage",
        choices=("sqlite", "postgres", "both"),
        default="sqlite",
        help="the Dagster instance's storage; both: SQLite, then PostgreSQL, and their ratio",
    )
    args = parser.parse_args()
    first, last = date.fromisoformat(args.first), date.fromisoformat(args.last)
    storages = ["sqlite", "postgres"] if args.storage == "both" else [args.storage]
    walls = {
        storage: run(first, last, args.history_page_cap, storage, args.fetch_alone, args.coins)
        for storage in storages
    }
    if len(walls) == 2:
        print(f"postgres / sqlite wall: {walls['postgres'] / walls['sqlite']:.2f}")


def megabytes(path: Path) -> float:
    """The size of a file, or of every file under a folder, in MB."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    return sum(p.stat().st_size for p in files) / 1e6


def run(
    first: date, last: date, page_cap: int, storage: str, fetch_alone: bool, size: int
) -> float:
    """One backfill of ``first``..``last`` for a basket of ``size`` coins on a new instance;
    prints its figures, returns its wall time."""
    work = Path(tempfile.mkdtemp(prefix="coinsum-bench-"))
    okx = FakeOKX()  # OKX's published rate limits, enforced
    okx.page_caps[HISTORY_CANDLES] = page_cap
    coins = okx.list_swaps(size)
    os.environ.update(
        OKX_BASE_URL=okx.start(),
        COINSUM_DB=str(work / "coinsum.duckdb"),
        COINSUM_EXPORTS=str(work / "exports"),
        DAGSTER_HOME=str(work / "dagster_home"),
    )
    os.environ["COINSUM_COINS"] = ",".join(coins)
    os.environ.pop("COINSUM_PG_URL", None)
    pg_name = None
    if storage == "postgres":
        pg_name, os.environ["COINSUM_PG_URL"] = new_database("coinsum_bench")

    from dagster import DagsterInstance

    from coinsum_pipeline import clock
    from coinsum_pipeline.backfill import backfill, export_range, plan
    from coinsum_pipeline.core.slots import day_start
    from coinsum_pipeline.defs import assets, checks
    from coinsum_pipeline.defs.resources import resolved
    from coinsum_pipeline.instance.home import dagster_home
    from coinsum_pipeline.okx.client import OKXClient
    from coinsum_pipeline.okx.fetch import fetch_basket
    from coinsum_pipeline.warehouse.database import CoinsumDatabase
    from coinsum_pipeline.warehouse.reports import range_summary

    dagster_home()
    now = clock.now()
    print(
        f"backfill {first} .. {last}, {len(coins)} coins, history page cap "
        f"{page_cap}, OKX rate limits {dict(RATE_LIMITS)}, instance on {storage}"
    )

    watch = Stopwatch()
    watch.time(assets, "fetch_basket", "waiting for OKX (slot candles)")
    watch.time(checks, "daily_opens", "waiting for OKX (1D opens, base check)")
    watch.time(DagsterInstance, "handle_new_event", event_label)
    for method in ("write", "read"):
        watch.time_block(CoinsumDatabase, method, "DuckDB (write + snapshot; checks' reads)")
    watch.time(CoinsumDatabase, "baskets", "DuckDB (write + snapshot; checks' reads)")

    def instance_mb() -> float:
        return database_bytes(pg_name) / 1e6 if pg_name else megabytes(work / "dagster_home")

    with DagsterInstance.get() as instance:
        empty_instance_mb = instance_mb()  # its tables, before the backfill
        started = time.monotonic()
        outcomes = list(backfill(first, last, now, instance))
        wall = time.monotonic() - started
        in_runs = dict(watch.seconds), dict(watch.calls)
        export_started = time.monotonic()
        exported = export_range(first, min(last, now.date()), instance)
        export_wall = time.monotonic() - export_started
    served = {path: okx.request_count(path) for path in RATE_LIMITS if okx.request_count(path)}
    tripped = okx.rate_limited

    with resolved("database") as database, database.read() as conn:
        stored = range_summary(conn, day_start(first), day_start(last).replace(hour=23, minute=30))

    runs = plan(first, last, now)
    slots = sum(len(run) for run in runs)
    fetch_only = None
    if fetch_alone:  # the same slot candles fetched outside Dagster: how much is OKX's
        client = OKXClient(os.environ["OKX_BASE_URL"])
        fetch_started = time.monotonic()
        for run in runs:
            fetch_basket(client, coins, run)
        fetch_only = time.monotonic() - fetch_started
    okx.stop()
    days = (last - first).days + 1
    duckdb_mb = megabytes(work / "coinsum.duckdb")
    snapshot_mb = megabytes(work / "coinsum.read.duckdb")
    instance_growth_mb = instance_mb() - empty_instance_mb
    exports_mb = megabytes(work / "exports")
    if pg_name:
        drop_database(pg_name)

    floor = floor_seconds(served)
    peak_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    workers_mb = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"runs:            {len(outcomes)} ({sum(o.success for o in outcomes)} succeeded)")
    print(
        f"slots:           {slots}  values {stored['values']}  sums {stored['sums']}  "
        f"missing {stored['missing']}"
    )
    print(f"slot runs:       {wall:.1f} s  ({slots / wall:.1f} slots/s)")
    print(f"requests:        {sum(served.values())}  {served}  (429s: {tripped})")
    print(
        f"rate-limit floor {floor:.2f} s (busiest endpoint)  ->  slot runs / floor = "
        f"{wall / floor:.2f}"
    )
    print("where the slot runs' time went (main thread; the read-ahead runs beside it):")
    seconds, calls = in_runs
    events = {k: v for k, v in seconds.items() if k.startswith("event ")}
    for label in sorted(set(seconds) - set(events), key=seconds.get, reverse=True):
        print(f"  {seconds[label]:7.1f} s  {label}  ({calls[label]} calls)")
    print(
        f"  {sum(events.values()):7.1f} s  Dagster writing {sum(calls[k] for k in events)} events "
        f"({sum(events.values()) / max(1, sum(calls[k] for k in events)) * 1000:.1f} ms each):"
    )
    for label in sorted(events, key=events.get, reverse=True)[:6]:
        print(f"  {'':9} {events[label]:6.1f} s  {calls[label]:6}  {label[6:]}")
    print(
        f"  {wall - sum(seconds.values()):7.1f} s  the rest: Dagster's run and step handling, "
        "computing the tables"
    )
    if fetch_only is not None:
        print(f"fetch alone:     {fetch_only:.1f} s (slot candles, outside Dagster, afterwards)")
    print(
        f"exports:         {export_wall:.1f} s for {(last - first).days + 1} days "
        f"(CSVs, day tables, charts; one export_days run, "
        f"{'ok' if exported.success else 'FAILED'}), after the slot runs"
    )
    print(
        f"end to end:      {wall + export_wall:.1f} s  ({(wall + export_wall) / floor:.2f} x floor)"
    )
    print(f"peak memory:     {peak_mb:.0f} MB this process, {workers_mb:.0f} MB largest worker")
    print(
        f"on disk:         DuckDB {duckdb_mb:.1f} MB (+ snapshot {snapshot_mb:.1f} MB), instance "
        f"({storage}) +{instance_growth_mb:.1f} MB, exports {exports_mb:.1f} MB; per day "
        f"{duckdb_mb / days:.2f} / {instance_growth_mb / days:.2f} / {exports_mb / days:.2f} MB"
    )
    return wall


if __name__ == "__main__":
    main()
