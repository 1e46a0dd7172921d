"""The hourly tidy deletes superseded runs and never a partition's latest materialization."""

from __future__ import annotations

import sqlite3
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import pytest
from dagster import (
    AssetCheckKey,
    AssetKey,
    DagsterInstance,
    ScheduleDefinition,
    SkipReason,
    build_schedule_context,
)
from dagster._core.scheduler.instigation import InstigatorTick
from sqlalchemy import text

from coinsum_pipeline.backfill import export_range, run_slots
from coinsum_pipeline.core.slots import BEIJING
from coinsum_pipeline.defs.constants import RECOLLECT_TAG
from coinsum_pipeline.defs.partitions import FIRST_DAY
from coinsum_pipeline.defs.schedules import recollect_today, recollect_yesterday
from coinsum_pipeline.instance.daemon import daemon_in_process
from coinsum_pipeline.instance.storage import (
    REINDEXED_EACH_PASS,
    REINDEXED_NIGHTLY,
    VACUUMED_TABLES,
    TickStatus,
)
from coinsum_pipeline.instance.tidy import KEEP, stored_ticks, tidy_at
from coinsum_pipeline_tests.helpers import Pipeline, beijing

pytestmark = pytest.mark.slow

DAY = date(2026, 1, 5)
SLOTS = AssetKey("basket_slots")
CHECKS = ("slot_completeness", "base_matches_okx", "no_extreme_moves", "freshness_check")


def vacuumed(instance: DagsterInstance) -> set[str]:
    """The instance's PostgreSQL tables that a VACUUM (not autovacuum) has been through."""
    with instance.event_log_storage.index_connection() as connection:
        rows = connection.execute(
            text("SELECT relname FROM pg_stat_user_tables WHERE vacuum_count > 0")
        ).fetchall()
    return {name for (name,) in rows}


def index_files(instance: DagsterInstance, tables: tuple[str, ...]) -> set[tuple[str, int]]:
    """The file of each of the instance's PostgreSQL indexes on ``tables``, by index: a rebuilt
    index has a new one."""
    with instance.event_log_storage.index_connection() as connection:
        rows = connection.execute(
            text(
                "SELECT indexrelid::regclass::text, pg_relation_filenode(indexrelid) FROM pg_index"
                " WHERE indrelid::regclass::text = ANY(:tables)"
            ),
            {"tables": list(tables)},
        ).fetchall()
    assert len(rows) > len(tables), f"the indexes of {tables}"
    return {tuple(row) for row in rows}


def free_pages(home: Path) -> dict[str, int]:
    """The pages SQLite holds free in each of the instance's shared files in ``home``."""
    pages = {}
    for name in ("history/runs.db", "history/runs/index.db", "schedules/schedules.db"):
        with closing(sqlite3.connect(home / name)) as db:
            pages[name] = db.execute("PRAGMA freelist_count").fetchone()[0]
    return pages


def check_runs(instance: DagsterInstance) -> set[str]:
    """The runs that the checks' results, as the UI lists them, link to."""
    return {
        execution.run_id
        for name in CHECKS
        for execution in instance.event_log_storage.get_asset_check_execution_history(
            AssetCheckKey(SLOTS, name), limit=1_000
        )
    }


@pytest.mark.parametrize(
    "storage", ["pipeline", pytest.param("pg_pipeline", marks=pytest.mark.postgres)]
)
def test_superseded_runs_go_and_every_partition_stays_materialized(
    storage: str, request: pytest.FixtureRequest
) -> None:
    pipeline: Pipeline = request.getfixturevalue(storage)
    instance = pipeline.instance
    first = run_slots([beijing("2026-01-05 00:00")], instance)
    assert export_range(DAY, DAY, instance).success  # the day after its first slot
    early_export = instance.get_runs(limit=1)[0].run_id
    assert run_slots([beijing("2026-01-05 00:30")], instance).success
    assert export_range(DAY, DAY, instance).success  # and after its second
    again = run_slots([beijing("2026-01-05 00:00")], instance)  # gap repair, say
    runs_before = {run.run_id for run in instance.get_runs()}
    materialized = {
        key: instance.get_materialized_partitions(AssetKey(key))
        for key in ("basket_slots", "day_exports")
    }
    assert first.run_id in check_runs(instance)

    now = datetime.now(UTC)
    daytime = now - timedelta(hours=2) if now.astimezone(BEIJING).hour == 0 else now
    postgres = storage == "pg_pipeline"
    reindexed = (REINDEXED_EACH_PASS, REINDEXED_NIGHTLY) if postgres else ()
    indexes = {tables: index_files(instance, tables) for tables in reindexed}
    assert tidy_at(instance, daytime).runs_deleted == 0, f"nothing is deleted within {KEEP}"
    if postgres:  # the indexes of some tables rebuilt each pass, of others nightly
        assert not index_files(instance, REINDEXED_EACH_PASS) & indexes[REINDEXED_EACH_PASS]
        assert index_files(instance, REINDEXED_NIGHTLY) == indexes[REINDEXED_NIGHTLY]
    # The first pass of a Beijing day, over an hour later: the nightly one.
    nightly = beijing(f"{(now + KEEP).astimezone(BEIJING).date() + timedelta(days=1)} 00:05")
    tidied = tidy_at(instance, nightly)

    gone = runs_before - {run.run_id for run in instance.get_runs()}
    assert gone == {first.run_id, early_export}, "just the superseded ones"
    if storage == "pipeline":  # SQLite: a file of events per run
        home = pipeline.db.parent / "dagster_home"
        files = home / "history" / "runs"
        assert not any((files / f"{run_id}.db").exists() for run_id in gone), "their files too"
        assert (files / f"{again.run_id}.db").exists()
        assert set(free_pages(home).values()) == {0}, "the shared files give the space back"
    else:  # PostgreSQL: the tables vacuumed, for the next events to fill the space
        assert vacuumed(instance) == set(VACUUMED_TABLES)
        assert not index_files(instance, REINDEXED_NIGHTLY) & indexes[REINDEXED_NIGHTLY]
    assert tidied.runs_deleted == 2 and tidied.runs_looked_at == len(runs_before)
    assert first.run_id not in check_runs(instance), "its check results went with it"
    assert again.run_id in check_runs(instance)
    for key, partitions in materialized.items():
        assert instance.get_materialized_partitions(AssetKey(key)) == partitions, key
    assert pipeline.query("SELECT count(*) FROM coin_sum") == [(2,)], "the data is untouched"


def test_a_run_holding_a_checks_latest_result_stays(pipeline: Pipeline) -> None:
    """A freshness run materializes nothing: it is superseded only once a later run judged."""
    from coinsum_pipeline.definitions import defs

    freshness = defs.resolve_implicit_global_asset_job_def().get_subset(
        asset_check_selection={AssetCheckKey(SLOTS, "freshness_check")}, asset_selection=set()
    )
    slot = run_slots([beijing("2026-01-05 00:00")], pipeline.instance)
    judged = [freshness.execute_in_process(instance=pipeline.instance) for _ in range(2)]
    later = datetime.now(UTC) + KEEP + timedelta(minutes=1)
    assert tidy_at(pipeline.instance, later).runs_deleted == 1
    kept = {slot.run_id, judged[1].run_id}
    assert {run.run_id for run in pipeline.instance.get_runs()} == kept, "the first judge went"
    assert check_runs(pipeline.instance) == kept


def all_ticks(instance: DagsterInstance) -> list[InstigatorTick]:
    return [tick for _, ticks in stored_ticks(instance) for tick in ticks]


def has_logs(instance: DagsterInstance, tick: InstigatorTick) -> bool:
    data = instance.compute_log_manager.get_log_data(tick.log_key)
    return bool(data.stdout or data.stderr)


def test_skipped_ticks_tick_logs_and_automation_evaluations_go_after_an_hour(
    pipeline: Pipeline, clock_at: Callable[[str], datetime]
) -> None:
    """The daemon's own turns for a few minutes after a slot is stored: per-minute sensors
    skip, the freshness sensor logs, the export sensor evaluates its condition."""
    instance = pipeline.instance
    clock_at("2026-01-05 00:01")
    assert run_slots([beijing("2026-01-05 00:00")], instance).success
    with daemon_in_process(instance) as daemon:
        for minute in ("00:02", "00:03", "00:04"):
            daemon.instigate(clock_at(f"2026-01-05 {minute}"))
    ticks = all_ticks(instance)
    assert {TickStatus.SKIPPED, TickStatus.SUCCESS} <= {tick.status for tick in ticks}
    logged = [tick for tick in ticks if tick.log_key and has_logs(instance, tick)]
    assert logged, "the freshness sensor logs at its ticks"
    storage = instance.schedule_storage
    assert storage.get_auto_materialize_asset_evaluations(AssetKey("day_exports"), limit=100)

    assert tidy_at(instance, datetime.now(UTC)).ticks_deleted == 0, f"nothing within {KEEP}"
    tidied = tidy_at(instance, datetime.now(UTC) + KEEP + timedelta(minutes=1))

    left = all_ticks(instance)
    assert tidied.ticks_deleted == sum(t.status == TickStatus.SKIPPED for t in ticks) > 0
    assert left and all(tick.status != TickStatus.SKIPPED for tick in left), "these stay"
    assert not any(has_logs(instance, tick) for tick in logged), "the logs of every tick go"
    assert not storage.get_auto_materialize_asset_evaluations(AssetKey("day_exports"), limit=100)


@pytest.mark.parametrize(
    ("schedule", "fired", "day", "last"),
    [
        (recollect_today, "2026-01-11 03:03", "2026-01-11", "03:00"),
        (recollect_today, "2026-01-11 21:03", "2026-01-11", "21:00"),
        (recollect_yesterday, "2026-01-11 00:03", "2026-01-10", "23:30"),
    ],
)
def test_the_re_collections_take_slots_again_in_one_run(
    schedule: ScheduleDefinition, fired: str, day: str, last: str
) -> None:
    request = schedule(build_schedule_context(scheduled_execution_time=beijing(fired)))
    assert request.run_key == f"recollect:{request.tags[RECOLLECT_TAG]}:{day}-{last}"
    assert request.tags["dagster/asset_partition_range_start"] == f"{day}-00:00"
    assert request.tags["dagster/asset_partition_range_end"] == f"{day}-{last}"
    # Fired as late as it can be and still find its day before the first partition day:
    lag = beijing(fired).date() - date.fromisoformat(day)
    before = beijing(f"{FIRST_DAY - timedelta(days=1) + lag} {fired[-5:]}")
    skipped = schedule(build_schedule_context(scheduled_execution_time=before))
    assert isinstance(skipped, SkipReason), "no slots before the first partition day"
    on_time = schedule(build_schedule_context(scheduled_execution_time=before + timedelta(days=1)))
    assert on_time.tags["dagster/asset_partition_range_start"] == f"{FIRST_DAY}-00:00"
