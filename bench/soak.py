"""Soak: N days of live operation in fast time, through the same instance storage and code paths
as the services, printing per simulated day what it leaves on disk and the memory used.

The soak is the daemon: minute by minute of simulated time it runs the daemon's own iterations,
in process, on the code location loaded in process: the scheduler (the live slots at :00 and
:30, the day so far again every three hours from 03:03, yesterday again at 00:03, the tidy
at :05), the sensors (gap repair, freshness; alert_on_new_slots is stopped, as without a
webhook in production), the automation condition
sensor (the day exports), and the run queue. So every tick, skipped or not, its captured logs
and each automation evaluation are stored as in production. The clock is moved, not waited
for, and the stand-in OKX serves the candles of the simulated time. The instance is SQLite
files in DAGSTER_HOME, or PostgreSQL with ``--storage postgres`` (a new database on the local server
that ``scripts/postgres`` starts; the soak's storage operations share a pool of connections, see
``postgres.share_connections``).

The run queue launches each run in a process of its own, forked from the soak
(``dagster_compat.ForkRunLauncher``: what ``dagster api execute_run`` runs), so its memory
goes when it ends, as with the daemon's run launcher; the soak waits for it before moving the
clock on. So the
memory the soak keeps in use is the daemon's and its code server's, to watch day after day,
and the runs' peak is the biggest run's.

A day's row is printed at 04:10 the morning after, once its re-collection and tidy have
run. Its peak is the largest size the instance had since the previous row at :04 past an hour,
just before the tidy, when the hour's runs and ticks are all still there. Dagster's own log
lines (the sensors' and the daemon's) go to stderr. Not simulated: the webserver, and run
monitoring (no run dies here). Dagster holds back SIGINT and SIGTERM during its turns (as the
daemon does, to finish a tick), so a soak may not stop on them: stop it with SIGKILL, then drop
its ``coinsum_soak_*`` database and remove its work folder.

    .venv/bin/python bench/soak.py --days 7 2>soak.log
    .venv/bin/python bench/soak.py --days 7 --storage postgres 2>soak.log
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import resource
import shutil
import tempfile
import time
from datetime import date, datetime, timedelta
from pathlib import Path

import time_machine
from postgres import database_bytes, drop_database, new_database, share_connections

from coinsum_pipeline.okx.fake import FakeOKX


def current_rss_mb() -> float:
    """This process's resident memory now, after a collection and after handing the heap's free
    pages back to the system (glibc's ``malloc_trim``): what is still in use. Unlike the peak it
    can fall, so a leak shows as a rise day after day."""
    gc.collect()
    ctypes.CDLL("libc.so.6").malloc_trim(0)
    pages = int(Path("/proc/self/statm").read_text().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 2**20


def folder_bytes(path: Path) -> int:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) if path.exists() else 0


def read_migrations_once() -> None:
    """Dagster reads its schema migration scripts each time it builds an instance (about 40 ms
    on SQLite), as the code server does for every sensor tick: read once here, the soak runs
    twice as fast. Only time differs: nothing stored does."""
    from alembic.script import ScriptDirectory

    load = ScriptDirectory.from_config.__func__
    read: dict[str, ScriptDirectory] = {}

    def from_config(cls, config):
        where = config.get_main_option("script_location")
        if where not in read:
            read[where] = load(cls, config)
        return read[where]

    ScriptDirectory.from_config = classmethod(from_config)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--days", type=int, default=7)
    parser.add_argument("--storage", choices=("sqlite", "postgres"), default="sqlite")
    parser.add_argument("--start", default="2026-02-01", help="first simulated Beijing day")
    parser.add_argument("--keep", action="store_true", help="keep the work folder to look into")
    args = parser.parse_args()
    first = date.fromisoformat(args.start)

    work = Path(tempfile.mkdtemp(prefix="coinsum-soak-"))
    okx = FakeOKX(rate_limits={})
    os.environ.update(
        OKX_BASE_URL=okx.start(),
        COINSUM_DB=str(work / "coinsum.duckdb"),
        COINSUM_EXPORTS=str(work / "exports"),
        DAGSTER_HOME=str(work / "dagster_home"),
        COINSUM_START=first.isoformat(),
    )
    os.environ.pop("COINSUM_COINS", None)
    database = None
    if args.storage == "postgres":
        database, os.environ["COINSUM_PG_URL"] = new_database("coinsum_soak")
        share_connections()

    from dagster import DagsterInstance

    from coinsum_pipeline.core.slots import day_start, epoch_ms
    from coinsum_pipeline.instance.daemon import (
        ForkRunLauncher,
        daemon_in_process,
        use_fork_launcher,
    )
    from coinsum_pipeline.instance.home import dagster_home
    from coinsum_pipeline.instance.tidy import stored_ticks

    home = dagster_home()
    use_fork_launcher(home)
    read_migrations_once()
    runs_log = work / "runs.log"  # what the runs print: looked at only when one crashes
    print(f"soak: {args.days} simulated days from {first}, instance on {args.storage}, in {work}")
    print(
        "day         runs  ticks  instance MB  +MB/day  peak MB  duckdb MB  exports MB  "
        "runs' peak  daemon peak  in use MB  wall s"
    )

    with (
        DagsterInstance.get() as instance,
        time_machine.travel(day_start(first), tick=False) as clock,
        daemon_in_process(instance) as daemon,
    ):

        def minute(moment: datetime) -> None:
            """What the daemon does in a minute: schedules, sensors, automation, the queue."""
            clock.move_to(moment)
            okx.now_ms = epoch_ms(moment)
            daemon.instigate(moment)
            daemon.run_queued()

        def instance_bytes() -> int:
            return database_bytes(database) if database else folder_bytes(home)

        def ticks_stored() -> int:
            return sum(len(ticks) for _, ticks in stored_ticks(instance))

        previous = instance_bytes()
        print(f"(empty)     {0:5d}  {0:5d}  {previous / 1e6:11.2f}", flush=True)
        moment = day_start(first)
        ForkRunLauncher.output = runs_log
        for n in range(args.days):
            day = first + timedelta(days=n)
            started = time.monotonic()
            morning_after = day_start(day + timedelta(days=1)) + timedelta(hours=4, minutes=10)
            highest = 0
            while moment < morning_after:
                minute(moment)
                if moment.minute == 4:
                    highest = max(highest, instance_bytes())
                moment += timedelta(minutes=1)
            size = instance_bytes()
            okx.forget_requests()  # the stand-in's record, not the pipeline's memory
            peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
            runs_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
            duck = sum(p.stat().st_size for p in work.glob("coinsum*.duckdb"))
            print(
                f"{day}  {instance.get_runs_count():5d}  {ticks_stored():5d}  "
                f"{size / 1e6:11.2f}  {(size - previous) / 1e6:7.2f}  {highest / 1e6:7.2f}  "
                f"{duck / 1e6:9.2f}  "
                f"{folder_bytes(work / 'exports') / 1e6:10.2f}  {runs_peak:9.0f}  "
                f"{peak:11.0f}  {current_rss_mb():9.0f}  {time.monotonic() - started:6.0f}",
                flush=True,
            )
            previous = size
    okx.stop()
    if not args.keep:
        shutil.rmtree(work, ignore_errors=True)
        if database:
            drop_database(database)


if __name__ == "__main__":
    main()
