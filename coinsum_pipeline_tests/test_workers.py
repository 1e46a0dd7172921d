"""Runs on Celery workers (docs/operations.md#workers): the code server, the webserver and the
daemon on PostgreSQL, Redis as the broker, and two ``coinsum serve worker`` processes. A backfill
launched as the UI launches it: its runs are taken by the workers, not the code server; the
``okx`` pool (rows in PostgreSQL) holds across them; the worker running a run is SIGKILLed with
its pool mid-run and started again under its name, as systemd would, and run monitoring fails
that run and run retries run it again;
every slot ends exact, with no run left started and the pool free."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
from pathlib import Path

import pytest
from celery import Celery
from dagster import AssetKey, DagsterEventType, DagsterRunStatus, EventRecordsFilter, RunsFilter

from coinsum_pipeline_tests.browser import (
    free_port,
    launch_backfill,
    start_service,
    turn_off_live_collection,
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


def okx_spans(pipeline: Pipeline, run_ids: set[str]) -> list[tuple[float, float]]:
    """When each of the runs' step held its ``okx`` pool slot: from its start to its end or
    failure."""
    spans: dict[str, list[float]] = {}
    for kind in (
        DagsterEventType.STEP_START,
        DagsterEventType.STEP_SUCCESS,
        DagsterEventType.STEP_FAILURE,
        DagsterEventType.RUN_FAILURE,
    ):
        for record in pipeline.instance.get_event_records(EventRecordsFilter(event_type=kind)):
            if record.run_id in run_ids:
                spans.setdefault(record.run_id, []).append(record.timestamp)
    return sorted((min(times), max(times)) for times in spans.values() if len(times) > 1)


def test_runs_go_to_the_workers_the_pool_holds_and_a_killed_worker_is_retried(
    pg_pipeline: Pipeline, redis_url: str, tmp_path: Path
) -> None:
    instance = pg_pipeline.instance
    env = {**os.environ, "COINSUM_CELERY_BROKER": redis_url}
    env["COINSUM_CODE_SERVER"] = f"127.0.0.1:{free_port()}"
    turn_off_live_collection(env)
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "services.log"
    services = [
        start_service([COINSUM, "serve", "code"], env, log),
        start_service([COINSUM, "serve", "webserver", "--port", str(port)], env, log),
        start_service([COINSUM, "serve", "daemon"], env, log),
    ]

    def worker(name: str) -> subprocess.Popen:
        command = [COINSUM, "serve", "worker", "--name", name, "--concurrency", "1"]
        return start_service(command, env, log)

    workers = {name: worker(name) for name in ("one", "two")}
    celery = Celery(broker=redis_url, backend=redis_url)
    try:
        wait_for_ui(url, services[1], log)
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
        first = instance.get_run_by_id(started()[0].dagster_run.run_id)  # with its task's tag
        victim = celery.AsyncResult(first.tags[TASK_TAG]).info["hostname"].partition("@")[0]
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
        spans = okx_spans(pg_pipeline, {r.dagster_run.run_id for r in runs})
        assert len(spans) >= 3
        assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans)), f"okx overlapped: {spans}"

        assert assert_values_exact(pg_pipeline) == len(slots) * 27
        assert pg_pipeline.query("SELECT count(*) FROM coin_sum") == [(len(slots),)]
        assert not instance.event_log_storage.get_concurrency_info("okx").claimed_slots
        for proc in [*workers.values(), *services]:
            assert stop(proc) < 10
    finally:
        for proc in [*workers.values(), *services]:
            if proc.poll() is None:
                kill_unit(proc)
