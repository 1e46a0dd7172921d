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
from dagster import AssetKey, DagsterRunStatus, RunsFilter

from coinsum_pipeline.okx.fake import HISTORY_CANDLES, FakeOKX
from coinsum_pipeline_tests.browser import (
    free_port,
    launch_backfill,
    start_service,
    stop_live_collection,
    wait_for_backfill,
    wait_for_ui,
)
from coinsum_pipeline_tests.helpers import Pipeline, assert_values_exact, wait_for
from coinsum_pipeline_tests.test_production import kill_unit, stop

pytestmark = [pytest.mark.services, pytest.mark.postgres]

COINSUM = Path(sys.executable).parent / "coinsum"
# Two runs of the asset's backfill policy (288 slots a run): one for each worker.
DAYS = [f"2026-01-{d:02d}" for d in range(5, 12)]
TASK_TAG = "dagster-celery/task_id"


def worker_of(celery: Celery, run_tags: dict[str, str]) -> str | None:
    """The worker that took a run's task, from its result in Redis."""
    return celery.AsyncResult(run_tags[TASK_TAG]).worker if TASK_TAG in run_tags else None


def fetches_in_turn(okx: FakeOKX) -> list[str]:
    """The backfill runs' candle fetches as OKX saw them: each request's range end (its run's),
    in arrival order, with repeats collapsed. Runs that take turns at the ``okx`` pool give one
    entry each (a run and its retry, the same range, may merge); runs fetching at once, many."""
    ends = [params["after"] for path, params in okx.requests if path == HISTORY_CANDLES]
    return [end for n, end in enumerate(ends) if n == 0 or ends[n - 1] != end]


def test_runs_go_to_the_workers_the_pool_holds_and_a_killed_worker_is_retried(
    pg_pipeline: Pipeline, redis_url: str, tmp_path: Path
) -> None:
    instance = pg_pipeline.instance
    env = {**os.environ, "COINSUM_CELERY_BROKER": redis_url}
    env["COINSUM_CODE_SERVER"] = f"127.0.0.1:{free_port()}"
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "services.log"
    services = [
        start_service([COINSUM, "serve", "code"], env, log),
        start_service([COINSUM, "serve", "webserver", "--port", str(port)], env, log),
    ]

    def worker(name: str) -> subprocess.Popen:
        command = [COINSUM, "serve", "worker", "--name", name, "--concurrency", "1"]
        return start_service(command, env, log)

    workers = {name: worker(name) for name in ("one", "two")}
    celery = Celery(broker=redis_url, backend=redis_url)
    try:
        wait_for_ui(url, services[1], log)
        stop_live_collection(url)  # before the daemon would start it
        services.append(start_service([COINSUM, "serve", "daemon"], env, log))
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
        assert {run.status for run in others} == {DagsterRunStatus.SUCCESS}
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
        for proc in [*workers.values(), *services]:
            if proc.poll() is None:
                kill_unit(proc)
