"""The hourly tidy: keep the Dagster instance from growing for ever, without losing what the UI
shows. The work (``tidy_at``), and the op ``tidy_instance``, job ``tidy`` and schedule
``tidy_hourly`` that run it.

Live operation adds runs every half hour: the slot's run, its day's export run (a day is
exported again after each of its slots), freshness and alert runs. Their events stay in the
instance until deleted. Tick history is bounded by ``retention`` in ``dagster.yaml``, in whole
days only (``_tidy_ticks`` says why that is not enough); runs are not bounded at all. So this
deletes the skipped ticks, the ticks' logs and the automation evaluations of more than ``KEEP``
ago, and the finished runs whose every materialization and check result was superseded by a
later run's: the live runs of the slots a re-collection took again (the day so far every three
hours, the whole day at 00:03 the next night) and the previous re-collection, the day exports
of a day but the last, a slot collected again by gap repair, a freshness run once a later one
has judged, an alert or tidy run (which record nothing). Then it gives the space back
(``reclaim_deleted_space``).

A partition's latest materialization or check result, and the run it is in, is never deleted,
so no stored partition looks missing in the UI and every check keeps its status; a failed run
stays too, as a record of what failed. Each deleted run's captured logs (stdout and stderr of
its steps) and check results go with it. Runs of the last ``KEEP`` stay whatever they hold, so
a run somebody is looking into does not vanish under them. Run hourly at :05, two minutes after
the re-collections, this keeps a live run at most about four hours (until an hour after the
next re-collection), and the other runs about an hour: beyond the stored days, the instance
holds the live runs of at most the last four hours, and the day's last re-collection or two.
"""

# No ``from __future__ import annotations``: Dagster checks the op's context annotation as a type.

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from dagster import (
    AssetRecordsFilter,
    DagsterEventType,
    DagsterInstance,
    DagsterRunStatus,
    DefaultScheduleStatus,
    EventLogRecord,
    OpExecutionContext,
    RunsFilter,
    ScheduleDefinition,
    job,
    op,
)

from coinsum_pipeline import clock
from coinsum_pipeline.core.slots import BEIJING
from coinsum_pipeline.defs.constants import ANYWHERE
from coinsum_pipeline.instance.storage import (
    InstigatorState,
    InstigatorTick,
    TickStatus,
    delete_automation_evaluations,
    delete_run_leftovers,
    latest_check_run,
    reclaim_deleted_space,
)

KEEP = timedelta(hours=1)
BATCH = 200


@dataclass(frozen=True)
class Tidied:
    runs_looked_at: int
    runs_deleted: int
    ticks_deleted: int


def tidy_at(instance: DagsterInstance, now: datetime, keep: timedelta = KEEP) -> Tidied:
    """Delete the superseded runs, the skipped ticks, the ticks' captured logs and the automation
    evaluations from more than ``keep`` before ``now``, and give their space back; in the first
    pass of a Beijing day (hourly at :05, that is 00:05), the nightly part of it too."""
    cutoff = now - keep
    looked, deleted = _tidy_runs(instance, cutoff)
    ticks, evaluated = _tidy_ticks(instance, cutoff)
    delete_automation_evaluations(instance, through=evaluated)
    reclaim_deleted_space(instance, nightly=now.astimezone(BEIJING).hour == 0)
    return Tidied(looked, deleted, ticks)


def _tidy_runs(instance: DagsterInstance, cutoff: datetime) -> tuple[int, int]:
    """The finished runs created before ``cutoff`` looked at, and those deleted."""
    looked, deleted, cursor = 0, 0, None
    while True:
        records = instance.get_run_records(
            RunsFilter(statuses=[DagsterRunStatus.SUCCESS], created_before=cutoff),
            limit=BATCH,
            cursor=cursor,
        )
        if not records:
            return looked, deleted
        cursor = records[-1].dagster_run.run_id
        for record in records:
            looked += 1
            run_id = record.dagster_run.run_id
            if _superseded(instance, run_id):
                instance.delete_run(run_id)
                delete_run_leftovers(instance, run_id)
                instance.compute_log_manager.delete_logs(prefix=[run_id])
                deleted += 1


def _tidy_ticks(instance: DagsterInstance, cutoff: datetime) -> tuple[int, int]:
    """Delete the skipped ticks from before ``cutoff``, and the captured logs of every tick from
    before it; the number of ticks deleted, and the last automation evaluation id among them.

    Three sensors tick every 15 s or every minute, thousands of ticks a day, nearly all skipped
    (nothing to do), and a day of them is the shortest ``retention`` dagster.yaml can set. The
    freshness sensor logs at most ticks, a file of captured logs each, which Dagster's retention
    leaves behind when it deletes a tick. Ticks that requested runs or failed stay for as long
    as ``retention`` says (30 days), with the runs they link to.
    """
    before = cutoff.timestamp()
    deleted, evaluated = 0, 0
    for state, ticks in stored_ticks(instance, before):
        for tick in ticks:
            if tick.log_key:
                instance.compute_log_manager.delete_logs(log_key=tick.log_key)
            deleted += tick.status == TickStatus.SKIPPED
            # An automation evaluation's id is its tick's (or that of the tick it retried), and
            # tick ids grow with time: the evaluations up to the newest id here are this old.
            evaluated = max(evaluated, tick.automation_condition_evaluation_id)
        instance.purge_ticks(
            state.instigator_origin_id,
            state.selector_id,
            before=before,
            tick_statuses=[TickStatus.SKIPPED],
        )
    return deleted, evaluated


def stored_ticks(
    instance: DagsterInstance, before: float | None = None
) -> Iterator[tuple[InstigatorState, Sequence[InstigatorTick]]]:
    """Each schedule's and sensor's stored ticks (those from before the timestamp ``before``)."""
    for state in instance.all_instigator_state():
        origin, selector = state.instigator_origin_id, state.selector_id
        yield state, instance.get_ticks(origin, selector, before=before)


def _superseded(instance: DagsterInstance, run_id: str) -> bool:
    """Whether every partition this run materialized, and every check result it logged, has a
    later one: then nothing the UI shows as current comes from this run."""
    for event in _events(instance, run_id, DagsterEventType.ASSET_MATERIALIZATION):
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
    for event in _events(instance, run_id, DagsterEventType.ASSET_CHECK_EVALUATION):
        evaluation = event.event_log_entry.dagster_event.event_specific_data
        if latest_check_run(instance, evaluation.asset_check_key, evaluation.partition) == run_id:
            return False
    return True


def _events(instance: DagsterInstance, run_id: str, kind: DagsterEventType) -> list[EventLogRecord]:
    return list(instance.get_records_for_run(run_id, of_type=kind, limit=10_000).records)


@op(
    description=(
        "Delete finished runs whose materializations and check results are superseded, skipped "
        "ticks, ticks' logs and automation evaluations, all older than an hour."
    ),
)
def tidy_instance(context: OpExecutionContext) -> None:
    tidied = tidy_at(context.instance, clock.now())
    context.log.info(
        f"deleted {tidied.runs_deleted} of {tidied.runs_looked_at} finished runs, "
        f"{tidied.ticks_deleted} skipped ticks"
    )


@job(description="Prune superseded runs and old ticks, so the instance stays small.", tags=ANYWHERE)
def tidy() -> None:
    tidy_instance()


# Hourly, between the live slots and after the re-collections: a day's superseded export and
# freshness runs go within the hour, its live runs within an hour of the next re-collection.
tidy_hourly = ScheduleDefinition(
    name="tidy_hourly",
    job=tidy,
    cron_schedule="5 * * * *",
    execution_timezone="Asia/Shanghai",
    default_status=DefaultScheduleStatus.RUNNING,
    description="The tidy at :05 past each hour: see coinsum_pipeline/instance/tidy.py.",
)
