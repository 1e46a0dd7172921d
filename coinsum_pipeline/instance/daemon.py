"""The Dagster daemon's turns in one process, on a clock the caller moves: the scheduler, the
sensors, the automation condition sensor, the backfills and the run queue, with runs forked from
this process. For the soak and the tests that cannot wait for the wall clock.

It runs Dagster's own daemon code (private modules: the daemon has no public API to take one
turn), checked against the installed Dagster by ``test_dagster_compat.py``.
"""

from __future__ import annotations

import logging
import multiprocessing.forkserver
import os
import sys
import traceback
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import datetime
from pathlib import Path
from typing import ClassVar

from dagster import DagsterInstance
from dagster._core.launcher import LaunchRunContext, RunLauncher
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._serdes import ConfigurableClass, ConfigurableClassData

from coinsum_pipeline.settings import PROJECT_ROOT


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
