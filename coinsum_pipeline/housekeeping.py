"""Housekeeping: keep the Dagster instance from growing for ever, without losing what the UI
shows.

Live operation adds runs every half hour: the slot's run, its day's export run (a day is
exported again after each of its slots), freshness and alert runs. Their events stay in the
instance until deleted. Tick history is bounded by ``retention`` in ``dagster.yaml``; runs are
not, so this deletes the finished runs older than ``KEEP_DAYS`` whose every materialization was
superseded by a later run's: a day's 48 live runs once the nightly run has collected the day
again, the day exports of a day but the last, a slot collected again by gap repair, a
freshness, alert or housekeeping run (which materializes nothing). A partition's latest
materialization, and the run it is in, is never deleted, so no stored partition looks missing
in the UI; a failed run stays too, as a record of what failed. Each deleted run's captured logs
(stdout and stderr of its steps) go with it. Two days: the live runs of yesterday and today,
with their logs, stay to look into.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from dagster import (
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    RunsFilter,
)

from coinsum_pipeline.defs.dagster_compat import delete_run_file

KEEP_DAYS = 2
BATCH = 200


@dataclass(frozen=True)
class Tidied:
    runs_looked_at: int
    runs_deleted: int


def tidy(instance: DagsterInstance, now: datetime, keep_days: int = KEEP_DAYS) -> Tidied:
    """Delete the superseded runs that finished more than ``keep_days`` before ``now``."""
    cutoff = now - timedelta(days=keep_days)
    looked, deleted, cursor = 0, 0, None
    while True:
        records = instance.get_run_records(
            RunsFilter(statuses=[DagsterRunStatus.SUCCESS], created_before=cutoff),
            limit=BATCH,
            cursor=cursor,
        )
        if not records:
            return Tidied(looked, deleted)
        cursor = records[-1].dagster_run.run_id
        for record in records:
            looked += 1
            run_id = record.dagster_run.run_id
            if _superseded(instance, run_id):
                instance.delete_run(run_id)
                delete_run_file(instance, run_id)
                instance.compute_log_manager.delete_logs(prefix=[run_id])
                deleted += 1


def _superseded(instance: DagsterInstance, run_id: str) -> bool:
    """Whether every partition this run materialized has a later materialization."""
    events = instance.get_records_for_run(
        run_id, of_type=DagsterEventType.ASSET_MATERIALIZATION, limit=10_000
    ).records
    for event in events:
        materialization = event.asset_materialization
        latest = instance.fetch_materializations(
            AssetRecordsFilter(
                asset_key=materialization.asset_key,
                asset_partitions=[materialization.partition] if materialization.partition else None,
            ),
            limit=1,
        ).records
        if latest and latest[0].run_id == run_id:
            return False
    return True
