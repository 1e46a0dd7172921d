"""Runs on workers of their own: Dagster's Celery run launcher, and ``coinsum serve worker``.

With ``COINSUM_CELERY_BROKER`` set (a Redis), the instance's ``dagster.yaml`` gets the run
launcher of ``deploy/celery-run-launcher.yaml`` (``home.prepare_home``): the daemon hands each
run to Redis instead of starting it beside the code server, and a worker, on this host or
another, runs it in a process of its own. The queued run coordinator, the ``okx`` pool (its
slots are rows in the instance's database), run monitoring and run retries work as before.

Two queues (``defs/constants.py``): runs that read or write the DuckDB file go to the workers on
the host that holds it; the others (alerts, the tidy) to any worker.

``RunLauncher`` is Dagster's ``CeleryRunLauncher`` with one addition. Celery records a run's task
as started when a worker takes it, and nothing changes that record when the whole worker is
killed or its host goes down: Dagster's run monitoring would then see the run as running for
ever, holding its ``okx`` slot. Here a started task whose worker answers without it, or whose
worker has answered nothing for ``SILENT_SECONDS``, is a failed run worker, which run
monitoring fails (its ``okx`` slot freed at once) and run retries run again. One unanswered
look is not enough: a loaded host can be slow to answer, and failing a healthy run would start
its retry beside it.
"""

from __future__ import annotations

import sys
import time
import warnings
from typing import Any

from dagster import DagsterInstance, DagsterRun
from dagster._core.launcher import CheckRunHealthResult, WorkerStatus
from dagster_celery.launcher import CeleryRunLauncher
from dagster_celery.make_app import make_app
from dagster_celery.tags import DAGSTER_CELERY_TASK_ID_TAG
from dagster_celery.tasks import create_execute_job_task, create_resume_job_task

from coinsum_pipeline.defs.constants import WORKER_QUEUES
from coinsum_pipeline.instance.storage import free_pool_slots

# Dagster's launcher registers its task again at each launch, and Celery warns that the name is
# taken, in the daemon's journal: harmless, and nothing an operator can act on.
warnings.filterwarnings("ignore", message=r"Task name '\w+' is already registered")

# How long a worker has to answer a look: its main process answers while its pool runs a run.
ANSWER_SECONDS = 5.0
# A worker silent for this long (several of run monitoring's looks) is taken for gone.
SILENT_SECONDS = 120.0


class WorkerSettingError(Exception):
    pass


class RunLauncher(CeleryRunLauncher):
    """Dagster's Celery run launcher, telling a killed worker's run from a running one."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._silent_since: dict[str, float] = {}  # run id: when its worker first missed a look

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        health = super().check_run_worker_health(run)
        if health.status != WorkerStatus.RUNNING:
            self._silent_since.pop(run.run_id, None)
            return health
        task = self.celery.AsyncResult(run.tags[DAGSTER_CELERY_TASK_ID_TAG])
        worker = task.info.get("hostname") if isinstance(task.info, dict) else None
        if worker is None:
            return health
        # Not a ping: a worker restarted under the same name (systemd's Restart=always) answers
        # one, without the run.
        inspect = self.celery.control.inspect([worker], timeout=ANSWER_SECONDS, limit=1)
        answers = inspect.active() or {}
        if worker in answers:
            self._silent_since.pop(run.run_id, None)
            if task.id in {active["id"] for active in answers[worker]}:
                return health
            reason = f"its Celery worker {worker} is not running it: the worker was restarted"
        else:
            silent = time.monotonic() - self._silent_since.setdefault(run.run_id, time.monotonic())
            if silent < SILENT_SECONDS:
                return health
            reason = (
                f"its Celery worker {worker} has not answered for {silent:.0f} s: the worker was "
                "killed, or its host is down or cut off from Redis"
            )
        health = super().check_run_worker_health(run)
        if health.status != WorkerStatus.RUNNING:
            return health  # it ended between the two looks
        self._silent_since.pop(run.run_id, None)
        # Its okx slot at once, not a minute after run monitoring fails the run: the dead worker
        # cannot use it, and the run's retry is about to wait for it.
        free_pool_slots(self._instance, run.run_id)
        return CheckRunHealthResult(WorkerStatus.FAILED, reason)


def worker_argv(queues: list[str], name: str, concurrency: int) -> list[str]:
    """Celery's own worker command line, as ``coinsum serve worker`` runs it."""
    return [
        "worker",
        *("--queues", ",".join(queues)),
        *("--hostname", f"{name}@%h"),
        *("--concurrency", str(concurrency)),
        # One run at a time per pool process, none taken ahead: a run waits in Redis, where
        # any idle worker can take it, not behind a busy one.
        "--prefetch-multiplier=1",
        "--without-gossip",
        "--without-mingle",
        "--loglevel=INFO",
    ]


def run_worker(queues: list[str], name: str, concurrency: int) -> None:
    """A Celery worker for the runs the instance's launcher sends to ``queues``, until stopped.

    It is built from the instance's own launcher settings, so the worker and the daemon agree
    on Redis and the queues by construction."""
    with DagsterInstance.get() as instance:
        launcher = instance.run_launcher
        if not isinstance(launcher, CeleryRunLauncher):
            raise WorkerSettingError(
                "this instance starts its runs itself, so no run would reach a worker: set "
                "COINSUM_CELERY_BROKER (a Redis URL, the same for the daemon and every worker) "
                "and start the daemon again (docs/operations.md#workers)."
            )
        app = make_app(launcher.app_args())
    # A run's log lines go to the worker's output as they are, not as Celery's warnings.
    app.conf.worker_redirect_stdouts = False
    create_execute_job_task(app)
    create_resume_job_task(app)
    app.worker_main(worker_argv(queues, name, concurrency))


if __name__ == "__main__":  # what ``services.worker_command`` runs: RUNS NAME CONCURRENCY
    runs, name, concurrency = sys.argv[1:]
    try:
        run_worker(list(WORKER_QUEUES[runs]), name, int(concurrency))
    except WorkerSettingError as exc:
        sys.exit(f"coinsum serve worker: {exc}")
