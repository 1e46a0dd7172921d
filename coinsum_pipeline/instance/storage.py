"""What tidying the instance needs of Dagster beyond its public API: what deleting a run
leaves behind, ticks and automation evaluations, a check's latest run, a dead run's pool slots,
and giving back the space of what was deleted (VACUUM and REINDEX of Dagster's own tables).

``test_dagster_compat.py`` and ``test_tidy.py`` check each use against the installed Dagster,
so an upgrade that moves one fails there, naming it. Why each is needed: docs/architecture.md.
"""

from __future__ import annotations

from pathlib import Path

from dagster import AssetCheckKey, DagsterInstance
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.scheduler.instigation import (
    InstigatorState as InstigatorState,
)
from dagster._core.scheduler.instigation import (
    InstigatorTick as InstigatorTick,
)
from dagster._core.scheduler.instigation import (
    TickStatus as TickStatus,
)
from dagster._core.storage.event_log import SqlEventLogStorage, SqliteEventLogStorage
from dagster._core.storage.event_log.schema import AssetCheckExecutionsTable
from dagster._core.storage.schedules import SqlScheduleStorage
from dagster._core.storage.schedules.schema import AssetDaemonAssetEvaluationsTable
from dagster_postgres import PostgresEventLogStorage
from sqlalchemy import text


def delete_run_leftovers(instance: DagsterInstance, run_id: str) -> None:
    """After ``instance.delete_run``: the run's own SQLite file of events, if it has one, and the
    check results it logged, which the UI would go on listing with a link to no run."""
    storage = instance.event_log_storage
    if isinstance(storage, SqliteEventLogStorage):
        Path(storage.path_for_shard(run_id)).unlink(missing_ok=True)
    if isinstance(storage, SqlEventLogStorage):
        with storage.index_connection() as connection:
            connection.execute(
                AssetCheckExecutionsTable.delete().where(
                    AssetCheckExecutionsTable.c.run_id == run_id
                )
            )


def delete_automation_evaluations(instance: DagsterInstance, through: int) -> None:
    """Delete the automation condition evaluations up to evaluation id ``through``: one each
    time the export sensor's condition changes, which Dagster would keep 30 days. By id, from
    the ticks that made them, as a tick's time is the daemon's clock and an evaluation's the
    database's."""
    storage = instance.schedule_storage
    if isinstance(storage, SqlScheduleStorage) and through:
        table = AssetDaemonAssetEvaluationsTable
        with storage.connect() as connection:
            connection.execute(table.delete().where(table.c.evaluation_id <= through))


# What the tidy VACUUMs on PostgreSQL (every storage in one database, as coinsum configures
# it): the tables it deletes from (runs and their tags, events and their tags, check results,
# ticks, evaluations), and those whose few rows Dagster rewrites every minute (each sensor's state
# and cursor in instigators and jobs, each asset's cached status in asset_keys). Until a VACUUM
# records the space that old rows left, new rows go to new pages: instigators and jobs, a few
# rows each, grew by megabytes in a simulated day (docs/operations.md, "Growth").
VACUUMED_TABLES = (
    "runs",
    "run_tags",
    "event_logs",
    "asset_event_tags",
    "asset_check_executions",
    "job_ticks",
    "asset_daemon_asset_evaluations",
    "instigators",
    "jobs",
    "asset_keys",
)
# The tables whose indexes the tidy rebuilds on PostgreSQL: each pass, and nightly. Their ids
# and timestamps only grow, so new entries go to the last index page; a page whose entries were
# deleted is reused only once all are gone, and a kept tick or event (a tick that requested a
# run, a day's re-collection) among deleted ones keeps it. The job_ticks indexes take thousands
# of ticks a day, of which a few percent stay, so they grew every day. event_logs keeps more of
# what it takes, and is bigger: nightly is enough.
REINDEXED_EACH_PASS = ("job_ticks",)
REINDEXED_NIGHTLY = ("event_logs",)


def reclaim_deleted_space(instance: DagsterInstance, nightly: bool) -> None:
    """Make the space of what the tidy deleted count.

    On PostgreSQL, VACUUM ``VACUUMED_TABLES``, so the next hour's events and ticks fill the space
    old rows left instead of growing the tables (autovacuum waits until a fifth of a table is
    dead rows, hours of live operation), and rebuild the indexes of ``REINDEXED_EACH_PASS``, and
    of ``REINDEXED_NIGHTLY`` if ``nightly`` (CONCURRENTLY: writers do not wait). On SQLite,
    VACUUM the instance's shared files (runs, the event index, ticks): SQLite reuses a freed
    page but never shrinks a file, so each would keep the size of its busiest hour, half of it
    free pages. They are a few MB, rewritten in milliseconds; a writer meanwhile waits
    (Dagster's SQLite connections wait 30 s when busy). That also rebuilds their indexes.
    """
    storage = instance.event_log_storage
    if isinstance(storage, PostgresEventLogStorage):
        with storage.index_connection() as connection:  # AUTOCOMMIT, as both statements need
            connection.execute(text(f"VACUUM {', '.join(VACUUMED_TABLES)}"))
            for table in REINDEXED_EACH_PASS + (REINDEXED_NIGHTLY if nightly else ()):
                connection.execute(text(f"REINDEX TABLE CONCURRENTLY {table}"))
    elif isinstance(storage, SqliteEventLogStorage):
        shared = (
            storage.index_connection,
            instance.run_storage.connect,
            instance.schedule_storage.connect,
        )
        for connect in shared:
            with connect() as connection:  # no transaction is open until a write: VACUUM runs
                connection.execute(text("VACUUM"))
                # VACUUM goes through the write-ahead log: write it back and empty it now.
                connection.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))


def latest_check_run(
    instance: DagsterInstance, check_key: AssetCheckKey, partition: str | None
) -> str | None:
    """The run that logged ``check_key``'s latest result on ``partition`` (None: the results
    logged on no partition), or None if there is none."""
    latest = instance.event_log_storage.get_asset_check_execution_history(
        check_key, limit=1, partition_filter=PartitionKeyFilter(key=partition)
    )
    return latest[0].run_id if latest else None


def free_pool_slots(instance: DagsterInstance, run_id: str) -> None:
    """Free the concurrency-pool slots a dead run still holds."""
    instance.event_log_storage.free_concurrency_slots_for_run(run_id)
