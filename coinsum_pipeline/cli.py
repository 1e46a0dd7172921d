"""The ``coinsum`` command: the pipeline for terminals, scripts and servers without a browser."""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import duckdb

from coinsum_pipeline.basket import BasketError, parse_basket, swap_inst_id
from coinsum_pipeline.okx import OKXClient, OKXError, OKXUnavailable
from coinsum_pipeline.partitions import DateError, day_start, parse_day
from coinsum_pipeline.settings import PROJECT_ROOT, dagster_home, value
from coinsum_pipeline.storage import StorageError, range_summary, snapshot_path, writer_lock


def _day(text: str) -> date:
    try:
        return parse_day(text)
    except DateError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="coinsum", description=__doc__)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "backfill",
        help="fetch and store every slot of a range of Beijing days",
        description="Materialize the slots of Beijing days FROM..TO (inclusive) through Dagster; "
        "the runs appear in the UI. Exits 1 if any slot could not be fetched.",
    )
    run.add_argument("--from", dest="first", type=_day, required=True, metavar="YYYY-MM-DD")
    run.add_argument("--to", dest="last", type=_day, required=True, metavar="YYYY-MM-DD")
    run.add_argument(
        "--fail-fast",
        action="store_true",
        help="do not retry a failed run's step (the asset's retry policy); report at once",
    )
    sql = commands.add_parser(
        "sql",
        help="run a SQL query on the readers' snapshot of the DuckDB file and print the result",
        description="Run QUERY on the readers' snapshot of COINSUM_DB (*.read.duckdb, refreshed "
        "after every write) and print the rows. Tables: coin_prices, coin_sum, missing_values.",
    )
    sql.add_argument("query")
    commands.add_parser(
        "dev",
        help="start the Dagster UI and daemon (schedules, backfills) on this project's instance",
        add_help=False,
    )
    return parser


def _backfill(first: date, last: date, step_retries: bool) -> int:
    from dagster import DagsterInstance

    from coinsum_pipeline.backfill import backfill, plan

    coins = parse_basket(value("COINSUM_COINS"))  # a typo stops here, not in every run
    now = datetime.now().astimezone()
    total = sum(len(run) for run in plan(first, last, now))
    home = dagster_home()
    print(f"coinsum backfill {first} .. {last}: {total} slots, Dagster instance {home}")
    print(f"OKX {value('OKX_BASE_URL')}  ->  {value('COINSUM_DB')}", flush=True)
    with writer_lock(value("COINSUM_DB")):  # an unwritable path stops here too
        pass
    swaps = _okx_swaps(value("OKX_BASE_URL"))
    unlisted = [c for c in coins if swap_inst_id(c) not in swaps]
    if unlisted:
        print(
            f"note: OKX lists no swap for {', '.join(unlisted)}; their slots are stored as "
            "unknown_instrument in missing_values. Check COINSUM_COINS if that is a typo.",
            flush=True,
        )
    done, failed, started = 0, [], time.monotonic()
    with DagsterInstance.get() as instance:
        for outcome in backfill(first, last, now, instance, step_retries):
            done += outcome.slots
            rate = done / max(time.monotonic() - started, 1e-9)
            eta = (total - done) / rate if rate else 0
            status = "ok" if outcome.success else "FAILED"
            print(
                f"  {outcome.first_key} .. {outcome.last_key}  {status}  "
                f"{done}/{total} slots ({done / total:.0%})  {rate:.1f} slots/s  ETA {eta:.0f}s"
                f"  run {outcome.run_id[:8]}",
                flush=True,
            )
            if not outcome.success:
                failed.append(outcome)
                print(f"    {outcome.error}", flush=True)
    summary = _summary(first, last)
    print(
        f"done in {time.monotonic() - started:.1f}s: {summary['values']} values, "
        f"{summary['sums']} sums, {summary['missing']} missing "
        f"{summary['missing_by_reason'] or ''}".rstrip()
    )
    if failed:
        print(
            f"{len(failed)} run(s) failed (errors above). Slots OKX could not give are in "
            "missing_values as fetch_failed: run the same command again, or re-execute the runs "
            "in the UI, to fill them. A failed check is shown on its slots in the UI.",
            file=sys.stderr,
        )
        return 1
    return 0


def _okx_swaps(base_url: str) -> set[str]:
    """One request before any run, so a wrong host is one clear error, not a failed run per
    range after minutes of retries; returns the swaps OKX lists."""
    client = OKXClient(base_url, timeout=float(value("OKX_TIMEOUT_SECONDS")), attempts=3)
    try:
        return set(client.swap_instruments())
    except OKXUnavailable as exc:
        problem = "cannot reach OKX" if not exc.code else "OKX would not list its swaps"
        raise OKXUnavailable(
            f"{problem} at {base_url}: {exc}. Check OKX_BASE_URL and this machine's network; "
            "if OKX is rate limiting, try again in a minute."
        ) from exc
    finally:
        client.close()


def _snapshot() -> duckdb.DuckDBPyConnection:
    """The readers' snapshot, read-only: never blocks a run, never blocked by one."""
    path = snapshot_path(value("COINSUM_DB"))
    if not path.exists():
        raise StorageError(f"no data yet: {path} does not exist. Run `coinsum backfill` first.")
    return duckdb.connect(str(path), read_only=True)


def _summary(first: date, last: date) -> dict:
    with _snapshot() as conn:
        return range_summary(conn, day_start(first), day_start(last).replace(hour=23, minute=30))


def _sql(query: str) -> int:
    try:
        with _snapshot() as conn:
            frame = conn.execute(query).fetchdf()
    except duckdb.Error as exc:
        print(f"coinsum sql: {exc}", file=sys.stderr)
        return 2
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `coinsum sql … | head` ends quietly
    print(frame.to_string(index=False, max_rows=200) if len(frame) else "(no rows)")
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    args, extra = _parser().parse_known_args(argv)
    try:
        if args.command == "dev":
            dagster_home()
            workspace = str(PROJECT_ROOT / "workspace.yaml")
            dagster = str(Path(sys.executable).parent / "dagster")  # this environment's, not PATH's
            os.execv(dagster, [dagster, "dev", "-w", workspace, *extra])
        if extra:
            _parser().error(f"unrecognized arguments: {' '.join(extra)}")
        if args.command == "sql":
            return _sql(args.query)
        return _backfill(args.first, args.last, step_retries=not args.fail_fast)
    except (DateError, BasketError, StorageError, OKXError) as exc:
        print(f"coinsum: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
