"""The production instance: Dagster's runs, events, schedules and sensors on PostgreSQL
(``COINSUM_PG_URL``), each test on a new database of the local server (``scripts/postgres``).
The services themselves (webserver, daemon, restarts) are in ``test_production.py``."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date, datetime

import pytest
import sqlalchemy
from dagster import (
    AssetKey,
    DagsterRunStatus,
    RunsFilter,
    build_schedule_context,
    build_sensor_context,
)
from dagster_postgres import PostgresEventLogStorage, PostgresRunStorage

from coinsum_pipeline.backfill import backfill, run_slots
from coinsum_pipeline.core.slots import epoch_ms, slot_of_key
from coinsum_pipeline.definitions import defs
from coinsum_pipeline.defs.resources import build_resources
from coinsum_pipeline.defs.sensors import gap_repair
from coinsum_pipeline.instance.postgres_storage import RunStorage, ScheduleStorage
from coinsum_pipeline_tests.helpers import Pipeline, assert_values_exact, beijing

pytestmark = pytest.mark.postgres

SLOTS = AssetKey("basket_slots")


def test_the_instance_is_on_postgres_and_a_backfill_is_exact(pg_pipeline: Pipeline) -> None:
    instance = pg_pipeline.instance
    assert isinstance(instance.run_storage, PostgresRunStorage)
    assert isinstance(instance.event_log_storage, PostgresEventLogStorage)
    now = beijing("2026-11-25 10:00")
    outcomes = list(backfill(date(2026, 1, 5), date(2026, 1, 5), now, instance))
    assert [o.success for o in outcomes] == [True]
    assert assert_values_exact(pg_pipeline) == 48 * 27
    assert len(instance.get_materialized_partitions(SLOTS)) == 48
    assert all(run.is_success for run in instance.get_runs())


def test_the_live_schedules_run_and_gap_repairs_tick_on_postgres(
    pg_pipeline: Pipeline, clock_at: Callable[[str], datetime]
) -> None:
    instance = pg_pipeline.instance
    fired = clock_at("2026-01-10 03:30:02")
    pg_pipeline.okx.now_ms = epoch_ms(fired)
    context = build_schedule_context(instance=instance, scheduled_execution_time=fired)
    (request,) = defs.resolve_schedule_def("live_slots").evaluate_tick(context).run_requests
    assert run_slots([slot_of_key(request.partition_key)], instance).success
    assert pg_pipeline.query("SELECT count(*) FROM coin_sum") == [(1,)]

    # Gap repair on a new instance: the last 48 hours but the slot just collected.
    with build_sensor_context(instance=instance, resources=build_resources()) as context:
        result = gap_repair(context)
    repaired = [r.partition_key_range or (r.partition_key,) * 2 for r in result.run_requests]
    assert repaired == [("2026-01-08-04:00", "2026-01-10-03:00")]
    assert assert_values_exact(pg_pipeline) == 27


def test_the_storages_ask_whether_their_tables_are_migrated_once(pg_pipeline: Pipeline) -> None:
    """The daemon reads the sensors' state every few seconds and the run queue reads runs
    every two: after the first read, each is one connection, not two or four."""
    instance = pg_pipeline.instance
    opened: list[str] = []
    for name, storage in (("runs", instance.run_storage), ("schedules", instance.schedule_storage)):
        assert isinstance(storage, (RunStorage, ScheduleStorage))
        sqlalchemy.event.listen(storage._engine, "connect", lambda *_, n=name: opened.append(n))
    reads = [
        lambda: instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.QUEUED])),
        lambda: instance.all_instigator_state(),
    ]
    for read in reads:
        read()
    first = list(opened)
    opened.clear()
    for read in reads:
        read()
    assert first.count("runs") > 1 and first.count("schedules") > 1  # the questions, then the read
    assert opened == ["runs", "schedules"]  # the read alone
