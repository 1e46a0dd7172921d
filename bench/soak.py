"""Soak: N days of live operation in fast time, through the same instance storage and code paths
as the services, printing per simulated day what it leaves on disk and the memory used.

Each simulated slot does what the daemon does in real time: the live schedule's run for the
slot (its tick evaluated at :01 or :31), the day's export run the export sensor would request
after it, a gap-repair tick, an alerts tick, housekeeping at :05 past each hour, the freshness
check's run at its deadline (:20 or :50). At 12:03 the run that collects the morning's slots
again, and its export; each Beijing day ends with the next night's run that collects it again
(04:03), its export, and housekeeping (04:05). The clock is moved, not waited for, and the
stand-in OKX serves the candles of the simulated time. The instance is SQLite files in
DAGSTER_HOME, or PostgreSQL with ``--storage postgres`` (a new database on the local server
that ``scripts/postgres`` starts).

As in production, each run is a process of its own (forked from this one, so it starts at
once) and this process does what the daemon and its code server do between runs: evaluating
the schedules and sensors. So the memory this process keeps in use is the services' to watch
day after day, and the runs' peak is the biggest run's.

Not simulated: the sensors' tick records (bounded by ``retention`` in dagster.yaml: skipped
ticks are kept a day) and the webserver.

    .venv/bin/python bench/soak.py --days 7
    .venv/bin/python bench/soak.py --days 7 --storage postgres
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import os
import resource
import shutil
import sys
import tempfile
import time
import traceback
from datetime import date, datetime, timedelta
from pathlib import Path

import time_machine
from postgres import database_bytes, drop_database, new_database

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

    from dagster import DagsterInstance, build_schedule_context, build_sensor_context

    from coinsum_pipeline.core.slots import SLOT, day_start, epoch_ms
    from coinsum_pipeline.definitions import build_defs
    from coinsum_pipeline.defs.jobs import exports_job, housekeeping, slots_job
    from coinsum_pipeline.defs.resources import resolved
    from coinsum_pipeline.defs.schedules import live_slots, recollect_morning, recollect_yesterday
    from coinsum_pipeline.defs.sensors import alerts, freshness_sensor, gap_repair
    from coinsum_pipeline.settings import dagster_home

    home = dagster_home()
    defs = build_defs()
    quiet = {"loggers": {"console": {"config": {"log_level": "WARNING"}}}}
    jobs = {
        job.name: defs.resolve_job_def(job.name) for job in (slots_job, exports_job, housekeeping)
    }
    checks_job = defs.resolve_implicit_global_asset_job_def()
    print(f"soak: {args.days} simulated days from {first}, instance on {args.storage}, in {work}")
    print(
        "day         runs  instance MB  +MB/day  duckdb MB  exports MB  runs' peak  "
        "ticks' peak  in use MB  wall s"
    )

    with (
        DagsterInstance.get() as instance,
        time_machine.travel(day_start(first), tick=False) as clock,
    ):

        def at(moment: datetime) -> None:
            clock.move_to(moment)
            okx.now_ms = epoch_ms(moment)

        def launch(job, **options) -> None:
            """Run ``job`` in a process of its own, as the daemon's run launcher does: forked
            from this one, so it starts at once, and its memory goes when it ends."""
            sys.stdout.flush()
            sys.stderr.flush()
            child = os.fork()
            if child == 0:
                status = 1
                try:
                    job.execute_in_process(
                        instance=instance, run_config=quiet, raise_on_error=False, **options
                    )
                    status = 0
                except BaseException:
                    traceback.print_exc()
                finally:
                    sys.stderr.flush()
                    os._exit(status)
            if os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]):
                raise SystemExit(f"soak: the process of a {job.name} run failed; see above")

        def tidy() -> None:
            launch(jobs[housekeeping.name])

        def collect_again(schedule, moment: datetime, day: date) -> None:
            """A re-collection schedule's run at ``moment``, then the export run of ``day``."""
            at(moment)
            again = schedule(
                build_schedule_context(instance=instance, scheduled_execution_time=moment)
            )
            launch(jobs[slots_job.name], tags=again.tags)
            launch(jobs[exports_job.name], partition_key=day.isoformat())

        def tick_sensor(sensor, cursor: str | None, **resources) -> str | None:
            context = build_sensor_context(instance=instance, cursor=cursor, resources=resources)
            result = sensor(context)
            for request in getattr(result, "run_requests", None) or []:
                if request.asset_check_keys:  # the freshness check's own run
                    launch(
                        checks_job.get_subset(
                            asset_check_selection=set(request.asset_check_keys),
                            asset_selection=set(),
                        ),
                        tags=request.tags,
                    )
            return getattr(result, "cursor", None) or cursor

        def instance_bytes() -> int:
            return database_bytes(database) if database else folder_bytes(home)

        previous, cursors = instance_bytes(), {"gap": None, "fresh": None, "alerts": None}
        print(f"(empty)     {0:5d}  {previous / 1e6:11.2f}", flush=True)
        with resolved("duckdb") as db, resolved("alerts") as webhook:
            for n in range(args.days):
                day = first + timedelta(days=n)
                started = time.monotonic()
                for index in range(48):
                    slot = day_start(day) + SLOT * index
                    fired = slot + timedelta(minutes=1)
                    at(fired)
                    request = live_slots(
                        build_schedule_context(instance=instance, scheduled_execution_time=fired)
                    )
                    launch(
                        jobs[slots_job.name],
                        partition_key=request.partition_key,
                        tags={**request.tags, "dagster/schedule_name": "live_slots"},
                    )
                    at(fired + timedelta(minutes=1))  # the export sensor's next minute
                    launch(jobs[exports_job.name], partition_key=day.isoformat())
                    cursors["gap"] = tick_sensor(gap_repair, cursors["gap"], duckdb=db)
                    cursors["alerts"] = tick_sensor(
                        alerts, cursors["alerts"], duckdb=db, alerts=webhook
                    )
                    if (slot.hour, slot.minute) == (12, 0):
                        collect_again(recollect_morning, slot + timedelta(minutes=3), day)
                    if slot.minute == 0:
                        at(slot + timedelta(minutes=5))
                        tidy()
                    at(slot + timedelta(minutes=20, seconds=5))  # past the freshness deadline
                    cursors["fresh"] = tick_sensor(freshness_sensor, cursors["fresh"])
                night = day_start(day + timedelta(days=1)) + timedelta(hours=4, minutes=3)
                collect_again(recollect_yesterday, night, day)
                at(night + timedelta(minutes=2))
                tidy()
                size = instance_bytes()
                okx.forget_requests()  # the stand-in's record, not the pipeline's memory
                peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
                runs_peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
                duck = sum(p.stat().st_size for p in work.glob("coinsum*.duckdb"))
                print(
                    f"{day}  {instance.get_runs_count():5d}  {size / 1e6:11.2f}  "
                    f"{(size - previous) / 1e6:7.2f}  {duck / 1e6:9.2f}  "
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
