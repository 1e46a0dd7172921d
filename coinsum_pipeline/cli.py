"""The ``coinsum`` command: the pipeline for terminals, scripts and servers without a browser."""

from __future__ import annotations

import argparse
import logging
import os
import sys
import threading
import time
from collections.abc import Sequence
from datetime import date, datetime
from pathlib import Path

import duckdb

from coinsum_pipeline import clock
from coinsum_pipeline.core.alerts import trial_alert
from coinsum_pipeline.core.basket import (
    DEFAULT_COINS,
    BasketError,
    basket_text,
    parse_basket,
    swap_inst_id,
)
from coinsum_pipeline.core.slots import (
    DateError,
    current_slot,
    day_start,
    days_in,
    parse_day,
    slots_due,
)
from coinsum_pipeline.defs.constants import WORKER_QUEUES
from coinsum_pipeline.defs.resources import AlertSettingError, resolved
from coinsum_pipeline.demo import DEMO_DAYS, DEMO_FOLDER, run_demo
from coinsum_pipeline.instance.home import dagster_home
from coinsum_pipeline.instance.services import (
    WATCH_SECONDS,
    board_command,
    code_server_health_check,
    code_workspace,
    dev_command,
    serve_command,
    service_environment,
    wait_for_code_server,
    worker_command,
)
from coinsum_pipeline.instance.supervisor import exec_supervisor, stopping_within
from coinsum_pipeline.okx.client import OKXClient, OKXError, OKXUnavailable, OKXUnreachable
from coinsum_pipeline.settings import value
from coinsum_pipeline.warehouse.charts import PaletteError
from coinsum_pipeline.warehouse.database import CoinsumDatabase, StorageError
from coinsum_pipeline.warehouse.exports import write_range_files
from coinsum_pipeline.warehouse.reports import (
    basket_history,
    coverage,
    range_summary,
    slots_stored,
)
from coinsum_pipeline.warehouse.schema import SchemaError

LOG = logging.getLogger("coinsum")


def _day(text: str) -> date:
    try:
        return parse_day(text)
    except DateError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _days(command: argparse.ArgumentParser, required: bool) -> None:
    """--from/--to, Beijing calendar days, inclusive."""
    for flag, dest in (("--from", "first"), ("--to", "last")):
        command.add_argument(flag, dest=dest, type=_day, required=required, metavar="YYYY-MM-DD")


def build_parser() -> argparse.ArgumentParser:
    """The command line: each subcommand names what it runs (``run``), and whether it passes
    arguments it does not know on to Dagster (``passes_on``)."""
    parser = argparse.ArgumentParser(prog="coinsum", description=__doc__)
    parser.set_defaults(passes_on=False)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser(
        "backfill",
        help="fetch and store every slot of a range of Beijing days",
        description="Materialize the slots of Beijing days FROM..TO (inclusive) through Dagster; "
        "the runs appear in the UI. Exits 1 if any slot could not be fetched.",
    )
    _days(run, required=True)
    run.add_argument(
        "--fail-fast",
        action="store_true",
        help="do not retry a failed run's step (the asset's retry policy); report at once",
    )
    run.set_defaults(run=lambda a: _backfill(a.first, a.last, step_retries=not a.fail_fast))
    export = commands.add_parser(
        "export",
        help="write the CSVs (UTF-8 with BOM, the users' Chinese headers) and the curve of a range",
        description="Write full data, sums, missing values and the day tables of Beijing days "
        "FROM..TO as CSV, and the curve of the 27-coin sum as PNG, from the readers' snapshot.",
    )
    _days(export, required=True)
    export.add_argument(
        "--out", type=Path, default=None, help="folder (default: COINSUM_EXPORTS/ranges)"
    )
    export.set_defaults(run=lambda a: _export(a.first, a.last, a.out))
    status = commands.add_parser(
        "status",
        help="coverage per Beijing day: slots stored and complete, missing values by reason",
    )
    _days(status, required=False)
    status.set_defaults(run=lambda a: _status(a.first, a.last))
    sql = commands.add_parser(
        "sql",
        help="run a SQL query on the readers' snapshot of the DuckDB file and print the result",
        description="Run QUERY on the readers' snapshot of COINSUM_DB (*.read.duckdb, refreshed "
        "after every write) and print the rows. Tables: coin_prices, coin_sum, missing_values; "
        "views: day_table, slot_sums, daily_coverage, latest_slot, sums_between(first, last).",
    )
    sql.add_argument("query")
    sql.set_defaults(run=lambda a: _sql(a.query))
    basket = commands.add_parser(
        "basket",
        help="show the database's basket by day, or record a change of basket from a day on",
        description="Without --set: the baskets this database has tracked, from which Beijing "
        "day on, and when each change was recorded. With --set: record that the basket is COINS "
        "from --from (default: today, Beijing) on. Days before keep their basket; stored days "
        "from --from on keep the basket they were collected with until they are collected again.",
    )
    basket.add_argument("--set", dest="coins", metavar="COINS", help="e.g. BTC,ETH,SOL")
    basket.add_argument("--from", dest="first", type=_day, metavar="YYYY-MM-DD")
    basket.add_argument(
        "--allow-unlisted",
        action="store_true",
        help="record coins OKX lists no swap for (their slots are stored as unknown_instrument)",
    )
    basket.set_defaults(run=lambda a: _basket(a.coins, a.first, a.allow_unlisted))
    alert = commands.add_parser(
        "alert",
        help="send a test alert through the configured webhook",
        description="Send a test message through COINSUM_ALERT_WEBHOOK, in COINSUM_ALERT_FORMAT, "
        "as one deliver_alert run with its retries (shown in the UI), and print what the endpoint "
        "answered. Exits 1 if it refused every try.",
    )
    alert.add_argument("--test", action="store_true", required=True, help="send the test message")
    alert.set_defaults(run=lambda a: _alert_test())
    commands.add_parser(
        "dev",
        help="start the Dagster UI and daemon (schedules, backfills) on this project's instance",
        add_help=False,
    ).set_defaults(run=lambda a: _dev(a.extra), passes_on=True)
    serve = commands.add_parser(
        "serve",
        help="run one production service: Dagster's code server, webserver (UI) or daemon, or "
        "the board",
        description="Run one of Dagster's services on this project's instance (DAGSTER_HOME): "
        "the code server that loads coinsum's definitions and runs the runs, the webserver or "
        "the daemon (both connect to the code server at COINSUM_CODE_SERVER); the traders' "
        "board over the readers' snapshot; or a worker that runs the runs the daemon hands to "
        "Redis (COINSUM_CELERY_BROKER). A long-running service, as the systemd units in "
        "deploy/ run it; SIGTERM stops it within 10 seconds, with what it started. The code "
        "server marks failed the runs whose worker is gone (a killed service's, or its own when "
        "stopped mid-run) and frees their okx pool slots; run retries collect them again.",
    )
    serve.add_argument("service", choices=["code", "webserver", "daemon", "board", "worker"])
    serve.add_argument(
        "--host",
        default="127.0.0.1",
        help="the address to listen on (default 127.0.0.1: neither the UI nor the board has a "
        "login; put a reverse proxy with authentication in front to reach them from elsewhere)",
    )
    serve.add_argument(
        "--port", type=int, help="the port (default: 3000 for the webserver, 3001 for the board)"
    )
    serve.add_argument(
        "--runs",
        choices=sorted(WORKER_QUEUES),
        default="duckdb",
        help="a worker's runs: duckdb (the default), every run, for the host that holds "
        "COINSUM_DB; anywhere, only the runs that touch neither it nor the exports",
    )
    serve.add_argument(
        "--name", default="coinsum", help="a worker's name, before @host (default coinsum)"
    )
    serve.add_argument(
        "--concurrency", type=int, default=2, help="a worker's runs at a time (default 2)"
    )
    serve.set_defaults(run=lambda a: _serve(a.service, a.host, a.port, a))
    demo = commands.add_parser(
        "demo",
        help="offline and live: a stand-in OKX, the last days backfilled, then the UI",
        description="Start the stand-in for OKX on the real clock, backfill the last DAYS "
        "Beijing days from it into .demo/ (its own instance, database and exports), then start "
        "the UI and daemon (extra arguments go to `dagster dev`), collecting a new slot every "
        "30 minutes. Ctrl-C stops it all.",
    )
    demo.add_argument("--days", type=int, default=DEMO_DAYS, help="days to backfill (default 3)")
    demo.add_argument("--folder", type=Path, default=DEMO_FOLDER, help="default: .demo/")
    demo.add_argument(
        "--okx-port", type=int, default=0, help="the stand-in OKX's port (default: a free one)"
    )
    demo.set_defaults(
        run=lambda a: run_demo(a.days, a.folder.resolve(), a.okx_port, a.extra), passes_on=True
    )
    return parser


def _backfill(first: date, last: date, step_retries: bool) -> int:
    """The backfill, stopped by SIGTERM as by Ctrl-C (see ``stopping_within``): the slots
    stored stay, the run under way is marked failed."""
    with stopping_within("coinsum backfill", _close_this_backfills_runs) as stop:
        code = _backfill_range(first, last, step_retries, stop)
        if not stop.is_set():
            return code
    print(
        "coinsum backfill: stopped. The slots stored so far stay; the same command collects "
        "the rest.",
        file=sys.stderr,
    )
    return 130


def _close_this_backfills_runs() -> None:
    from dagster import DagsterInstance

    from coinsum_pipeline.instance.runs import close_dead_backfill_runs

    with DagsterInstance.get() as instance:
        close_dead_backfill_runs(instance, this_process=True)


def _backfill_range(first: date, last: date, step_retries: bool, stop: threading.Event) -> int:
    from dagster import DagsterInstance

    from coinsum_pipeline.backfill import backfill, export_range, plan

    now = clock.now()
    last = _up_to_today(first, last, now)
    requested = _requested_basket()  # a typo stops here, not in every run
    total = sum(len(run) for run in plan(first, last, now))
    home = dagster_home()
    database = _database()
    print(f"coinsum backfill {first} .. {last}: {total} slots, Dagster instance {home}")
    print(f"OKX {value('OKX_BASE_URL')}  ->  {database.database}", flush=True)
    database.probe()  # an unwritable path or a held file stops here too
    swaps = _okx_swaps()
    # A basket the database does not track stops here, before any run (exit 2).
    history = database.baskets(LOG, requested, first)
    coins = history.coins_of(days_in(first, last))
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
            if stop.is_set():  # the run was interrupted: Dagster reported it failed
                return 130
            done += outcome.slots
            rate = done / max(time.monotonic() - started, 1e-9)
            eta = (total - done) / rate if rate else 0
            status = "ok" if outcome.success else "FAILED"
            print(
                f"  {progress_bar(done, total)} {done}/{total} slots ({done / total:.0%})  "
                f"{rate:.1f} slots/s  ETA {eta:.0f}s  {outcome.first_key} .. {outcome.last_key} "
                f"{status}  run {outcome.run_id[:8]}",
                flush=True,
            )
            if not outcome.success:
                failed.append(outcome)
                print(f"    {outcome.error}", flush=True)
        newest_day = min(last, current_slot(now).date())
        exported = export_range(first, newest_day, instance)
    if exported.success:
        print(f"exports: {value('COINSUM_EXPORTS')} (a folder per day, ranges/ for ranges)")
    else:
        failed.append(exported)
        print(f"  exports FAILED: {exported.error}", flush=True)
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


def progress_bar(done: int, total: int, width: int = 24) -> str:
    filled = round(width * done / total) if total else width
    return "[" + "#" * filled + "-" * (width - filled) + "]"


def _export(first: date, last: date, folder: Path | None) -> int:
    """A range export from the readers' snapshot: no Dagster run, no wait for one."""
    last = _up_to_today(first, last, clock.now())
    with resolved("exports") as exports:
        target, palette = folder or exports.ranges(), exports.palette()
    with _database().read() as conn:
        if not slots_stored(conn, first, last):
            print(
                f"coinsum: no slots stored from {first} to {last}, so nothing was written; "
                "`coinsum status` lists the days stored, `coinsum backfill` fetches more.",
                file=sys.stderr,
            )
            return 1
        written = write_range_files(conn, first, last, target, palette)
    for kind, path in written.files.items():
        rows = written.rows.get(kind)
        print(f"{path}" + (f"  ({rows} rows)" if rows is not None else ""))
    return 0


def _status(first: date | None, last: date | None) -> int:
    """Coverage per Beijing day, from the ``daily_coverage`` view."""
    if first and last:
        _check_range(first, last)
    with _database().read() as conn:
        frame, newest = coverage(conn, first, last)
    if frame.empty:
        print("(no days stored in that range)")
        return 0
    now = clock.now()
    frame.insert(2, "slots_expected", [slots_due(day, now) for day in frame["trade_date"]])
    print(frame.to_string(index=False))
    print(
        f"{len(frame)} day(s); {int(frame['slots_complete'].sum())} of "
        f"{int(frame['slots_stored'].sum())} stored slots complete; "
        f"newest slot {newest:%Y-%m-%d %H:%M}"
    )
    return 0


def _check_range(first: date, last: date) -> None:
    if last < first:
        raise DateError(f"--to {last} is before --from {first}: give the earlier date first.")


def _up_to_today(first: date, last: date, now: datetime) -> date:
    """The last day a command over ``first``..``last`` acts on: ``last``, or today (Beijing) with
    a note when ``last`` is later; a range that starts after today is refused."""
    _check_range(first, last)
    today = now.date()
    if first > today:
        raise DateError(
            f"--from {first} is in the future: today in Beijing is {today}, with slots up to "
            f"{current_slot(now):%H:%M}. Give days up to today."
        )
    if last > today:
        print(
            f"note: --to {last} is in the future; stopping at today, {today}, whose slots so far "
            f"run to {current_slot(now):%H:%M} (Beijing).",
            flush=True,
        )
        return today
    return last


def _requested_basket() -> tuple[str, ...] | None:
    with resolved("basket") as basket:
        return basket.requested()


def _database() -> CoinsumDatabase:
    """The same database resource the Dagster definitions use, its settings read now (it holds
    no connection: each of its doors opens and closes its own)."""
    with resolved("database") as database:
        return database


def _basket(coins: str | None, first: date | None, allow_unlisted: bool) -> int:
    """Show the basket history, or record a change of basket from a day on."""
    if coins is None:
        if first is not None:
            raise BasketError("--from goes with --set: coinsum basket --set BTC,ETH --from DAY")
        with _database().read() as conn:
            frame = basket_history(conn)
        print(frame.to_string(index=False) if len(frame) else "(no basket recorded yet)")
        return 0
    if not coins.strip():
        raise BasketError(
            "--set '' names no coins: give the basket, e.g. --set BTC,ETH,SOL (the default 27: "
            f"--set {basket_text(DEFAULT_COINS)})."
        )
    basket = parse_basket(coins, source=f"--set {coins!r}")
    listed = _okx_swaps()
    unlisted = [coin for coin in basket if swap_inst_id(coin) not in listed]
    if unlisted and not allow_unlisted:
        raise BasketError(
            f"OKX lists no swap for {', '.join(unlisted)} ({swap_inst_id(unlisted[0])}), so every "
            "slot would be incomplete: check the spelling, or add --allow-unlisted to record "
            "them anyway (their slots are then stored as unknown_instrument). Nothing recorded."
        )
    since = first or clock.now().date()
    stored = _database().change_basket(LOG, since, basket)
    print(f"basket from {since} on: {len(basket)} coins ({basket_text(basket)})")
    if unlisted:
        print(f"note: OKX lists no swap for {', '.join(unlisted)}: stored as unknown_instrument")
    if stored:
        print(
            f"{stored} stored day(s) from {since} on keep the basket they were collected with "
            f"until collected again: coinsum backfill --from {since} --to <last day>"
        )
    requested = _requested_basket()
    if requested is not None and requested != basket:
        print(
            f"note: COINSUM_COINS is set to {basket_text(requested)}; set it to "
            f"{basket_text(basket)} or unset it, or runs will be refused."
        )
    return 0


def _alert_test() -> int:
    from dagster import DagsterEventType, DagsterInstance

    from coinsum_pipeline.definitions import build_defs
    from coinsum_pipeline.defs.jobs import alert_run, deliver_alert

    with resolved("alerts") as alerts:
        url, fmt, pause = alerts.url.strip(), alerts.format, alerts.retry_seconds
    if not url:
        raise AlertSettingError(
            "COINSUM_ALERT_WEBHOOK is not set: set it to the webhook's URL, then try again."
        )
    alert = trial_alert(clock.now())
    print(f"sending a test alert to {url} as {fmt} (up to 4 tries, {pause} s apart)", flush=True)
    with DagsterInstance.get() as instance:
        result = (
            build_defs()
            .resolve_job_def(deliver_alert.name)
            .execute_in_process(instance=instance, raise_on_error=False, **alert_run(alert))
        )
    for event in result.all_events:
        if event.event_type == DagsterEventType.STEP_OUTPUT:
            answer = event.step_output_data.metadata["answer"].value
            print(f"sent: the endpoint answered {answer}; run {result.run_id[:8]} in the UI")
            return 0
    (failure,) = result.get_step_failure_events()
    error = failure.step_failure_data.error
    print(
        f"coinsum: the test alert was not delivered: {(error.cause or error).message.strip()} "
        f"(run {result.run_id[:8]} in the UI shows each try)",
        file=sys.stderr,
    )
    return 1


def _dev(extra: list[str]) -> int:
    """``dagster dev`` on the project's instance, the board beside it, until stopped."""
    home = dagster_home()
    commands = [board_command(), dev_command(extra)]
    exec_supervisor("coinsum dev", commands, service_environment(os.environ), home, home)


def _serve(service: str, host: str, port: int | None, args: argparse.Namespace) -> int:
    """Run the board, or one of Dagster's services until stopped. The code server runs the runs
    (unless workers do): its supervisor closes those whose worker is gone (see ``runs.py``)."""
    if service == "board":
        from coinsum_pipeline.board.server import BoardPortError, serve_board

        try:
            serve_board(host, port or int(value("COINSUM_BOARD_PORT")))
        except BoardPortError as exc:
            print(f"coinsum: {exc}", file=sys.stderr)
            return 2
        return 0
    home = dagster_home()
    if service == "worker":
        command = worker_command(args.runs, args.name, args.concurrency)
        exec_supervisor("coinsum serve worker", [command], os.environ, home, runs_home=None)
    code_workspace(home)
    if service != "code":
        wait_for_code_server(service)
    command = serve_command(service, home, host, port or 3000)
    code = service == "code"
    exec_supervisor(
        f"coinsum serve {service}",
        [command],
        service_environment(os.environ),
        home,
        runs_home=home if code else None,
        ready=code_server_health_check() if code else None,
        # The webserver and daemon already running take the new server at their next look.
        settle_seconds=2 * WATCH_SECONDS if code else 0,
    )


def _okx_swaps() -> set[str]:
    """One request before any run, so a wrong host is one clear error, not a failed run per
    range after minutes of retries; returns the swaps OKX lists."""
    with resolved("okx") as okx:
        base_url, timeout = okx.base_url, okx.timeout_seconds
    client = OKXClient(base_url, timeout=timeout, attempts=3)
    try:
        return set(client.swap_instruments())
    except OKXUnreachable:
        raise
    except OKXUnavailable as exc:
        problem = "cannot reach OKX" if not exc.code else "OKX would not list its swaps"
        raise OKXUnavailable(
            f"{problem} at {base_url}: {exc}. Check OKX_BASE_URL and this machine's "
            "network; if OKX is rate limiting, try again in a minute."
        ) from exc
    finally:
        client.close()


def _summary(first: date, last: date) -> dict:
    with _database().read() as conn:
        return range_summary(conn, day_start(first), day_start(last).replace(hour=23, minute=30))


def _sql(query: str) -> int:
    try:
        with _database().read() as conn:
            frame = conn.execute(query).fetchdf()
    except duckdb.Error as exc:
        print(f"coinsum sql: {exc}", file=sys.stderr)
        return 2
    try:
        print(frame.to_string(index=False, max_rows=200) if len(frame) else "(no rows)")
        sys.stdout.flush()
    except BrokenPipeError:
        # `coinsum sql … | head` ends quietly. Not by restoring SIGPIPE's default: that would
        # outlive this call in a process that goes on (a test, a notebook) and kill it the next
        # time any socket of it writes to a peer that has gone.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    args.extra = extra  # what `dev` and `demo` pass on to `dagster dev`
    if args.extra and not args.passes_on:
        parser.error(f"unrecognized arguments: {' '.join(args.extra)}")
    try:
        return args.run(args)
    except (
        DateError,
        BasketError,
        StorageError,
        SchemaError,
        OKXError,
        PaletteError,
        AlertSettingError,
    ) as exc:
        print(f"coinsum: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
