"""What coinsum uses of Dagster beyond its stable public API, in one place.

- Dagster's own run tags for a partition range: there is no public way to ask for a range from a
  sensor's ``RunRequest`` or from ``execute_in_process``.
- Dagster's switch for one "planned" event per ranged run instead of one per partition.
- Freeing the ``okx`` pool slot of a run whose process was killed (run monitoring does this for
  the daemon's runs; ``coinsum backfill`` runs in-process, with no daemon watching).
- The materialization a check result judged: a result logged for one partition of a ranged run
  needs it, or Dagster counts the result as stale and the UI shows no status for that partition.
- What deleting a run leaves: on SQLite, the run's own file of events; on any storage, its check
  results.
- A check's latest result on one partition, and which run logged it.
- Tick statuses (to delete skipped ticks sooner than ``retention`` can), and deleting the
  automation condition sensor's evaluations (kept 30 days by Dagster).
- Giving back the space housekeeping frees: VACUUM of Dagster's own tables (by name) or files,
  and a rebuild of its indexes.
- The daemon's turns (scheduler, sensors, automation, run queue) run in process, for the soak
  and the tests that move the clock themselves.
- Beta, preview and superseded features (backfill policies, partitioned asset checks, the
  time-partition freshness check, which knows which slot should be there where the newer
  ``FreshnessPolicy`` only knows when the asset last changed) used without the notices that
  users cannot act on.

``test_dagster_compat.py`` checks each of these against the installed Dagster (the VACUUM, the
ticks, the evaluations and the daemon's turns through ``test_housekeeping.py``), so an upgrade
that moves one fails there, naming it.
"""

from __future__ import annotations

import logging
import multiprocessing.forkserver
import os
import sys
import traceback
import warnings
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import ClassVar, TypeVar

from dagster import (
    AssetCheckKey,
    AssetKey,
    AssetRecordsFilter,
    BetaWarning,
    DagsterInstance,
    PreviewWarning,
    SupersessionWarning,
)
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData,
)
from dagster._core.event_api import PartitionKeyFilter
from dagster._core.launcher import LaunchRunContext, RunLauncher
from dagster._core.scheduler.instigation import (  # for housekeeping
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
from dagster._core.storage.tags import (
    ASSET_PARTITION_RANGE_END_TAG,
    ASSET_PARTITION_RANGE_START_TAG,
    PARTITION_NAME_TAG,
)
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._serdes import ConfigurableClass, ConfigurableClassData
from dagster_postgres import PostgresEventLogStorage
from sqlalchemy import text

from coinsum_pipeline.settings import PROJECT_ROOT

T = TypeVar("T")
F = TypeVar("F", bound=Callable[..., object])

# Read by Dagster when a run starts: emit one planned-materialization event per run, not one
# per partition: the events are a backfill's biggest cost (docs/performance.md).
PLANNED_EVENTS_AS_SUBSET = "DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS"


def partition_tags(first: str, last: str) -> dict[str, str]:
    """Run tags that make a run materialize partitions ``first``..``last``; one partition runs
    as that partition (as a schedule's run does), so its checks record their result on it."""
    if first == last:
        return {PARTITION_NAME_TAG: first}
    return {ASSET_PARTITION_RANGE_START_TAG: first, ASSET_PARTITION_RANGE_END_TAG: last}


@contextmanager
def planned_events_per_run() -> Iterator[None]:
    """Within the block, this process's in-process runs emit one planned event per run instead of
    per partition. The price: a failed run's partitions show as missing rather than failed in
    the UI, and its partitions as not in progress while it runs. Only for the block: a run
    created afterwards in this process (a test's daemon turns) plans per partition again."""
    before = os.environ.get(PLANNED_EVENTS_AS_SUBSET)
    os.environ[PLANNED_EVENTS_AS_SUBSET] = "true"
    try:
        yield
    finally:
        if before is None:
            del os.environ[PLANNED_EVENTS_AS_SUBSET]
        else:
            os.environ[PLANNED_EVENTS_AS_SUBSET] = before


def latest_materializations(
    instance: DagsterInstance, asset_key: AssetKey, partitions: list[str]
) -> dict[str, AssetCheckEvaluationTargetMaterializationData]:
    """Each of ``partitions``' latest materialization, as the target of a check result on it."""
    if not partitions:
        return {}
    records = instance.fetch_materializations(
        AssetRecordsFilter(asset_key=asset_key, asset_partitions=partitions), limit=10_000
    ).records  # newest first
    latest: dict[str, AssetCheckEvaluationTargetMaterializationData] = {}
    for record in records:
        partition = record.event_log_entry.dagster_event.partition
        latest.setdefault(
            partition,
            AssetCheckEvaluationTargetMaterializationData(
                storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
            ),
        )
    return latest


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


# What housekeeping VACUUMs on PostgreSQL (every storage in one database, as coinsum configures
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
# The tables whose indexes housekeeping rebuilds on PostgreSQL: each pass, and nightly. Their ids
# and timestamps only grow, so new entries go to the last index page; a page whose entries were
# deleted is reused only once all are gone, and a kept tick or event (a tick that requested a
# run, a day's re-collection) among deleted ones keeps it. The job_ticks indexes take thousands
# of ticks a day, of which a few percent stay, so they grew every day. event_logs keeps more of
# what it takes, and is bigger: nightly is enough.
REINDEXED_EACH_PASS = ("job_ticks",)
REINDEXED_NIGHTLY = ("event_logs",)


def reclaim_deleted_space(instance: DagsterInstance, nightly: bool) -> None:
    """Make the space of what housekeeping deleted count.

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


class ForkRunLauncher(RunLauncher, ConfigurableClass):
    """A run launcher for the daemon's turns in process: each run in a process forked from this
    one, which runs what ``dagster api execute_run`` runs (the process Dagster's default launcher
    starts for a run). Forked, so the run starts at once and shares a moved clock; its memory
    goes when it ends. ``launched`` holds the processes not yet waited for; what a run prints
    goes to the file ``output``. Named in an instance's dagster.yaml by ``use_fork_launcher``."""

    launched: ClassVar[list[int]] = []
    output: ClassVar[Path] = Path(os.devnull)

    def __init__(self, inst_data: ConfigurableClassData | None = None) -> None:
        self._inst_data = inst_data
        super().__init__()

    @property
    def inst_data(self) -> ConfigurableClassData | None:
        return self._inst_data

    @classmethod
    def config_type(cls) -> dict:
        return {}

    @classmethod
    def from_config_value(cls, inst_data: ConfigurableClassData, config_value: dict):
        return cls(inst_data)

    def launch_run(self, context: LaunchRunContext) -> None:
        from dagster._cli.api import _execute_run_command_body

        instance: DagsterInstance = self._instance
        sys.stdout.flush()
        sys.stderr.flush()
        child = os.fork()
        if child == 0:
            status = 1
            # A fresh run process has no fork server: forget the parent's (it is not ours).
            multiprocessing.forkserver._forkserver.__init__()
            with ForkRunLauncher.output.open("a") as printed:
                os.dup2(printed.fileno(), 1)
                os.dup2(printed.fileno(), 2)
            try:
                _execute_run_command_body(
                    context.dagster_run.run_id, instance, lambda _event: None, False
                )
                status = 0
            except BaseException:
                traceback.print_exc()
            finally:
                sys.stderr.flush()
                os._exit(status)
        ForkRunLauncher.launched.append(child)

    def terminate(self, run_id: str) -> bool:
        return False


def use_fork_launcher(home: Path) -> None:
    """The instance settings of ``home`` (coinsum's, with PostgreSQL storage or without), with
    ``ForkRunLauncher`` as its run launcher: a file of its own, which coinsum then leaves alone."""
    config = home / "dagster.yaml"
    settings = config.read_text()
    config.unlink()
    config.write_text(
        settings + f"\nrun_launcher:\n  module: {__name__}\n  class: ForkRunLauncher\n"
    )


class DaemonTurns:
    """The Dagster daemon's turns, run in this process on coinsum's code location loaded in it:
    the same code as ``dagster-daemon run`` and its code server, for the soak and the tests,
    which move the clock themselves instead of waiting for it."""

    def __init__(self, workspace: WorkspaceProcessContext) -> None:
        from dagster._daemon.asset_daemon import AssetDaemon
        from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import (
            QueuedRunCoordinatorDaemon,
        )

        self._workspace = workspace
        settings = workspace.instance.get_settings("auto_materialize")
        self._automation = AssetDaemon(settings=settings, pre_sensor_interval_seconds=0)
        self._queue = QueuedRunCoordinatorDaemon(interval_seconds=0)
        self._schedule_times: dict = {}
        self._logger = logging.getLogger("coinsum.daemon")

    def instigate(self, now: datetime) -> None:
        """The scheduler's ticks due by ``now``, the sensors due, the automation condition
        sensor, the backfills: ticks stored, runs queued, as the daemon does each time round."""
        from dagster._daemon.backfill import execute_backfill_iteration
        from dagster._daemon.sensor import execute_sensor_iteration
        from dagster._scheduler.scheduler import launch_scheduled_runs

        list(launch_scheduled_runs(self._workspace, self._logger, now, self._schedule_times))
        list(execute_sensor_iteration(self._workspace, self._logger, None, None))
        self._automation._run_iteration_impl(
            self._workspace, threadpool_executor=None, amp_tick_futures={}, debug_crash_flags={}
        )
        list(execute_backfill_iteration(self._workspace, self._logger))

    def launch_queued(self) -> None:
        """One turn of the run queue: the queued runs its limits allow, launched by the
        instance's run launcher."""
        list(self._queue.run_iteration(self._workspace))

    def run_queued(self) -> None:
        """The run queue's turns until it launches nothing more, each run waited for: with
        ``ForkRunLauncher`` as the instance's run launcher."""
        while True:
            self.launch_queued()
            if not ForkRunLauncher.launched:
                return
            while ForkRunLauncher.launched:
                child = ForkRunLauncher.launched.pop()
                if os.waitstatus_to_exitcode(os.waitpid(child, 0)[1]):
                    raise RuntimeError(
                        f"a run's process failed; what it printed is in {ForkRunLauncher.output}"
                    )


@contextmanager
def daemon_in_process(instance: DagsterInstance) -> Iterator[DaemonTurns]:
    """``DaemonTurns`` on ``instance``, for as long as the context lasts, on the definitions
    loaded anew, with the environment as it is now (a code server started now would see it;
    a test imported them earlier, under another environment)."""
    import importlib

    from dagster._core.remote_origin import InProcessCodeLocationOrigin
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin
    from dagster._core.workspace.load_target import InProcessWorkspaceLoadTarget

    module = "coinsum_pipeline.definitions"
    if module in sys.modules:
        importlib.reload(sys.modules[module])
    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(
            module_name=module,
            attribute="defs",
            working_directory=str(PROJECT_ROOT),
        ),
        location_name="coinsum_pipeline",
    )
    with WorkspaceProcessContext(instance, InProcessWorkspaceLoadTarget(location)) as workspace:
        yield DaemonTurns(workspace)


@contextmanager
def _no_notices() -> Iterator[None]:
    with warnings.catch_warnings():
        for notice in (BetaWarning, PreviewWarning, SupersessionWarning):
            warnings.simplefilter("ignore", notice)
        yield


def without_notices(build: Callable[..., T], /, **kwargs: object) -> T:
    """``build(**kwargs)`` without Dagster's beta, preview and supersession notices, leaving the
    process's warning filters as they were."""
    with _no_notices():
        return build(**kwargs)


def decorate_without_notices(
    factory: Callable[..., Callable[[F], T]], /, **kwargs: object
) -> Callable[[F], T]:
    """``@factory(**kwargs)`` (``asset``, ``asset_check``…) without those notices, which some
    Dagster decorators give when applied rather than when called."""

    def apply(fn: F) -> T:
        with _no_notices():
            return factory(**kwargs)(fn)

    return apply
