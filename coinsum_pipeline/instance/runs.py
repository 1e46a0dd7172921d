"""Runs whose process is gone: finding them and closing them, so nothing waits on them.

A run's worker can die without a word: ``coinsum backfill`` killed mid-run (its runs execute in
its own process), or the daemon's service stopped or killed, taking the run workers it launched
with it. Dagster's run monitoring cannot tell with the default run launcher, so such a run would
show as started forever, and the slot it held in the ``okx`` pool would stay claimed: every later
run, the live schedule's too, would queue behind it. Its data is safe either way: each write is
one transaction. Closing it marks it failed with the reason and frees its slot; the daemon's run
retries and gap repair then collect its slots again.
"""

from __future__ import annotations

import os
import socket
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DagsterRun, DagsterRunStatus, RunsFilter

from coinsum_pipeline.instance.storage import free_pool_slots

LAUNCHED_BY_TAG = "coinsum/launched_by"
PID_TAG = "coinsum/pid"
# The run launcher whose run workers are processes on this host, beside the code server.
DEFAULT_LAUNCHER = "DefaultRunLauncher"
BACKFILL = "coinsum backfill"
UNFINISHED = [DagsterRunStatus.NOT_STARTED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]


def backfill_tags() -> dict[str, str]:
    """The tags of a run ``coinsum backfill`` executes in this process."""
    return {LAUNCHED_BY_TAG: BACKFILL, PID_TAG: f"{socket.gethostname()}:{os.getpid()}"}


def close_dead_backfill_runs(instance: DagsterInstance, this_process: bool = False) -> list[str]:
    """Close the runs a killed ``coinsum backfill`` on this machine left unfinished; with
    ``this_process``, those of this process instead, which is ending without finishing them."""
    closed = []
    for record in instance.get_run_records(
        RunsFilter(statuses=UNFINISHED, tags={LAUNCHED_BY_TAG: BACKFILL})
    ):
        host, _, pid = record.dagster_run.tags.get(PID_TAG, "").partition(":")
        if host != socket.gethostname() or not pid.isdigit():
            continue
        if int(pid) == os.getpid() if this_process else not _alive(int(pid)):
            _close(instance, record.dagster_run, f"the coinsum backfill process {pid} ended")
            closed.append(record.dagster_run.run_id)
    return closed


def close_orphaned_daemon_runs(instance: DagsterInstance) -> list[str]:
    """Close the starting and started runs whose worker process is gone: for the daemon's
    service to run before the daemon starts. No daemon is running then, so a run still starting
    was being launched when the last one died (a sensor's run launched a moment before a kill):
    its worker is gone too.

    Only with Dagster's default launcher, whose run workers are processes on this host. Runs on
    Celery workers (instance/workers.py), maybe another host's, are Dagster's run monitoring's
    to judge: their worker pid means nothing here, and a run being handed to Redis is starting
    without a worker yet."""
    if instance.get_ref().run_launcher_data.class_name != DEFAULT_LAUNCHER:
        return []
    closed = []
    leftover = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
    for record in instance.get_run_records(RunsFilter(statuses=leftover)):
        run = record.dagster_run
        if run.tags.get(LAUNCHED_BY_TAG) == BACKFILL:
            continue  # those run in their own process: close_dead_backfill_runs
        pid = _worker_pid(instance, run.run_id)
        if pid is None or not _started_by(pid, record.start_time or 0.0):
            _close(instance, run, "its run worker ended while the daemon was down")
            closed.append(run.run_id)
    return closed


def _close(instance: DagsterInstance, run: DagsterRun, why: str) -> None:
    instance.report_run_failed(run, message=f"{why}, without finishing this run")
    free_pool_slots(instance, run.run_id)


def _worker_pid(instance: DagsterInstance, run_id: str) -> int | None:
    """The pid the run's worker reported when it started ("Started process for run")."""
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        pid = data.metadata.get("pid") if data else None
        if pid is not None and "Started process for run" in (entry.message or ""):
            return int(pid.value)
    return None


def _started_by(pid: int, run_started: float) -> bool:
    """Whether process ``pid`` is alive and (where /proc tells) was started by the time the run
    started: a pid reused later, after a reboot say, is some other process."""
    if not _alive(pid):
        return False
    try:
        boot = next(
            float(line.split()[1])
            for line in Path("/proc/stat").read_text().splitlines()
            if line.startswith("btime ")
        )
        # The process's start, in clock ticks since boot: field 22, after "(comm)".
        ticks = int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    except (OSError, StopIteration, IndexError, ValueError):
        return True  # no /proc: alive is all we know
    return boot + ticks / os.sysconf("SC_CLK_TCK") <= run_started + 5


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
