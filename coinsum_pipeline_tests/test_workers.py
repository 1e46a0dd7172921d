"""Runs on Celery workers (docs/operations.md#workers): the code server, the webserver and the
daemon on PostgreSQL, Redis as the broker, and two ``coinsum serve worker`` processes. A backfill
launched as the UI launches it: its runs are taken by the workers, not the code server; the
``okx`` pool (rows in PostgreSQL) holds across them; the worker running a run is SIGKILLed with
its pool mid-run and started again under its name, as systemd would, and run monitoring fails
that run and run retries run it again;
every slot ends exact, with no run left started and the pool free."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterInstance,
    DagsterRun,
    DagsterRunStatus,
    RunsFilter,
)
from dagster._core.launcher import WorkerStatus

from coinsum_pipeline.definitions import build_defs
from coinsum_pipeline.instance import workers as run_workers
from coinsum_pipeline.instance.home import prepare_home
from coinsum_pipeline.instance.runs import close_orphaned_daemon_runs
from coinsum_pipeline.okx.fake import HISTORY_CANDLES, FakeOKX
from coinsum_pipeline_tests.browser import (
    free_port,
    launch_backfill,
    start_service,
    start_services,
    wait_for_backfill,
)
from coinsum_pipeline_tests.helpers import Pipeline, assert_values_exact, wait_for
from coinsum_pipeline_tests.test_production import kill_unit, stop

COINSUM = Path(sys.executable).parent / "coinsum"
# Two runs of the asset's backfill policy (288 slots a run): one for each worker.
DAYS = [f"2026-01-{d:02d}" for d in range(5, 12)]
TASK_TAG = "dagster-celery/task_id"
RUN_FAILURE = DagsterEventType.RUN_FAILURE


def worker_of(celery: Celery, run_tags: dict[str, str]) -> str | None:
    """The worker that took a run's task, from its result in Redis."""
    return celery.AsyncResult(run_tags[TASK_TAG]).worker if TASK_TAG in run_tags else None


def fetches_in_turn(okx: FakeOKX) -> list[str]:
    """The backfill runs' candle fetches as OKX saw them: each request's range end (its run's),
    in arrival order, with repeats collapsed. Runs that take turns at the ``okx`` pool give one
    entry each (a run and its retry, the same range, may merge); runs fetching at once, many."""
    ends = [params["after"] for path, params in okx.requests if path == HISTORY_CANDLES]
    return [end for n, end in enumerate(ends) if n == 0 or ends[n - 1] != end]


def test_runs_on_workers_are_not_closed_by_the_code_server_as_orphans(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Seen in the test below on a loaded machine: the code server, closing its predecessor's
    orphaned runs once it serves, closed a run the daemon was handing to Redis at that moment
    (starting, no task yet, no worker pid on this host). Runs on workers are run monitoring's.
    The instance is set up as the services set theirs up with a broker (no Redis is asked)."""
    monkeypatch.setenv("COINSUM_CELERY_BROKER", "redis://127.0.0.1:1/0")
    with DagsterInstance.from_config(str(prepare_home(tmp_path / "home"))) as instance:
        assert isinstance(instance.run_launcher, run_workers.RunLauncher)
        job = build_defs().resolve_job_def("tidy")
        statuses = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
        runs = [instance.create_run_for_job(job, status=status) for status in statuses]
        assert close_orphaned_daemon_runs(instance) == []
        assert [instance.get_run_by_id(run.run_id).status for run in runs] == statuses


@pytest.mark.services
def test_a_silent_worker_fails_its_run_only_after_missing_looks_for_a_while(
    redis_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A started run whose worker does not answer (its host down, or too loaded to answer in
    time) is running until its worker has been silent for ``SILENT_SECONDS``: one missed look
    must not fail a healthy run (its retry would start beside it). Then its okx slot is freed."""
    monkeypatch.setattr(run_workers, "ANSWER_SECONDS", 0.2)
    with DagsterInstance.local_temp(str(tmp_path)) as instance:
        launcher = run_workers.RunLauncher("dagster", broker=redis_url, backend=redis_url)
        launcher.register_instance(instance)
        run = DagsterRun(job_name="basket_slots", tags={TASK_TAG: "a-task"})
        launcher.celery.backend.store_result("a-task", {"hostname": "gone@host"}, "STARTED")
        instance.event_log_storage.set_concurrency_slots("okx", 1)
        instance.event_log_storage.claim_concurrency_slot("okx", run.run_id, "basket_slots")

        assert launcher.check_run_worker_health(run).status == WorkerStatus.RUNNING
        assert instance.event_log_storage.get_concurrency_info("okx").claimed_slots
        monkeypatch.setattr(run_workers, "SILENT_SECONDS", 0.0)
        health = launcher.check_run_worker_health(run)
        assert health.status == WorkerStatus.FAILED
        assert "gone@host has not answered" in health.msg
        assert not instance.event_log_storage.get_concurrency_info("okx").claimed_slots


@pytest.mark.services
@pytest.mark.postgres
def test_runs_go_to_the_workers_the_pool_holds_and_a_killed_worker_is_retried(
    pg_pipeline: Pipeline, redis_url: str, tmp_path: Path
) -> None:
    instance = pg_pipeline.instance
    env = {**os.environ, "COINSUM_CELERY_BROKER": redis_url}
    env["COINSUM_CODE_SERVER"] = f"127.0.0.1:{free_port()}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "services.log"
    services = start_services(env, log, port)

    def worker(name: str) -> subprocess.Popen:
        command = [COINSUM, "serve", "worker", "--name", name, "--concurrency", "1"]
        return start_service(command, env, log)

    workers = {name: worker(name) for name in ("one", "two")}
    celery = Celery(broker=redis_url, backend=redis_url)
    try:
        # Slow answers keep the first run in flight long enough to kill its worker mid-way.
        pg_pipeline.okx.slow_seconds = 2
        pg_pipeline.okx.fault_kinds = ("timeout",)
        pg_pipeline.okx.fault_rate = 1.0
        slots = [f"{day}-{h:02d}:{m:02d}" for day in DAYS for h in range(24) for m in (0, 30)]
        backfill_id = launch_backfill(url, "basket_slots", slots)

        def started() -> list:
            return instance.get_run_records(
                RunsFilter(
                    statuses=[DagsterRunStatus.STARTED], tags={"dagster/backfill": backfill_id}
                )
            )

        wait_for("a run of the backfill on a worker", 180, lambda: started())
        run_id = started()[0].dagster_run.run_id

        def taken_by() -> str | None:  # the launcher tags the run once Redis has its task
            task = instance.get_run_by_id(run_id).tags.get(TASK_TAG)
            info = celery.AsyncResult(task).info if task else None
            return info.get("hostname") if isinstance(info, dict) else None

        wait_for("the worker that took it", 30, taken_by)
        first = instance.get_run_by_id(run_id)
        victim = taken_by().partition("@")[0]
        kill_unit(workers[victim])  # the worker and its pool: no word to anyone
        # And back under the same name, as systemd restarts it: it answers, without the run.
        workers[victim] = worker(victim)

        pg_pipeline.okx.fault_rate = 0.0
        wait_for_backfill(url, backfill_id, seconds=300)
        # The days' exports follow on the workers too (drawn in the run's own process there).
        wait_for(
            "every day exported and no run queued or started",
            120,
            lambda: (
                all((pg_pipeline.exports / day / f"full_{day}.csv").exists() for day in DAYS)
                and not instance.get_run_records(
                    RunsFilter(statuses=[DagsterRunStatus.QUEUED, DagsterRunStatus.STARTED])
                )
            ),
        )
        killed = instance.get_run_by_id(first.run_id)
        assert killed.status == DagsterRunStatus.FAILURE
        runs = instance.get_run_records(RunsFilter(tags={"dagster/backfill": backfill_id}))
        retried = [
            r for r in runs if r.dagster_run.tags.get("dagster/parent_run_id") == first.run_id
        ]
        assert len(retried) == 1 and retried[0].dagster_run.status == DagsterRunStatus.SUCCESS
        # Every run, the exports' too, went through Redis to a worker and succeeded there, but
        # the one killed.
        others = [r.dagster_run for r in instance.get_run_records() if r.dagster_run != killed]
        failed = {
            run.run_id: [e.message for e in instance.all_logs(run.run_id, of_type=RUN_FAILURE)]
            for run in others
            if run.status != DagsterRunStatus.SUCCESS
        }
        assert not failed, f"runs that did not succeed, and why: {failed}"
        assert {worker_of(celery, run.tags).partition("@")[0] for run in others} <= set(workers)
        assert any(AssetKey("day_exports") in (run.asset_selection or ()) for run in others)
        # The killed run's, the other run's and the retry's, never interleaved.
        turns = fetches_in_turn(pg_pipeline.okx)
        assert len(set(turns)) == 2 and len(turns) <= 3, f"fetched at once: {turns}"

        assert assert_values_exact(pg_pipeline) == len(slots) * 27
        assert pg_pipeline.query("SELECT count(*) FROM coin_sum") == [(len(slots),)]
        assert not instance.event_log_storage.get_concurrency_info("okx").claimed_slots
        for proc in workers.values():  # the services' stops: test_production.py
            assert stop(proc) < 10
    finally:
        for proc in [*workers.values(), *services.values()]:
            if proc.poll() is None:
                kill_unit(proc)
