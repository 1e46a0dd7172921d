"""Production: Dagster's three services (the commands the systemd units in ``deploy/`` run: the
code server, the webserver and the daemon) on a PostgreSQL instance, reached through PgBouncer
set up as ``deploy/pgbouncer.ini`` sets it up. A backfill launched as the UI launches it, the
code server's whole unit killed (SIGKILL to every process of it, a run's worker included) in the
middle of a run and started again once the backfill daemon has looked without it: every slot
ends exact, no run stays "started", the okx pool is free. And SIGTERM stops each service within
10 seconds, leaving no process of it behind."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import psycopg2
import pytest
from dagster import DagsterRunStatus, RunsFilter

from coinsum_pipeline_tests.browser import (
    free_port,
    launch_backfill,
    start_service,
    start_services,
    wait_for_backfill,
)
from coinsum_pipeline_tests.helpers import (
    Pipeline,
    assert_values_exact,
    running,
    tree,
    wait_for,
)

pytestmark = [pytest.mark.services, pytest.mark.postgres]

DAY = "2026-01-05"
COINSUM = Path(sys.executable).parent / "coinsum"
STOP_SECONDS = 10


def stop(proc: subprocess.Popen) -> float:
    """SIGTERM to the service's main process, as systemd sends it; how long until it and every
    process it had started were gone."""
    processes = tree(proc.pid)
    started = time.monotonic()
    proc.send_signal(signal.SIGTERM)
    proc.wait(timeout=STOP_SECONDS + 20)
    while any(running(pid) for pid in processes) and time.monotonic() < started + 30:
        time.sleep(0.1)
    return time.monotonic() - started


def kill_unit(proc: subprocess.Popen) -> None:
    """SIGKILL to every process of the service at once: a crash nothing can clean up after."""
    for pid in tree(proc.pid):
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    proc.wait()


def pooled_transactions(url: str) -> int:
    """How many transactions PgBouncer (the socket in ``url``) has passed to ``url``'s database,
    from its admin console's statistics."""
    query = parse_qs(urlsplit(url).query)
    database = urlsplit(url).path.lstrip("/")
    console = psycopg2.connect(dbname="pgbouncer", host=query["host"][0], port=query["port"][0])
    console.autocommit = True
    with console.cursor() as cursor:
        cursor.execute("SHOW STATS")
        columns = [column.name for column in cursor.description]
        stats = [dict(zip(columns, row, strict=True)) for row in cursor.fetchall()]
    console.close()
    return sum(row["total_xact_count"] for row in stats if row["database"] == database)


def test_services_on_postgres_survive_a_killed_code_server_and_stop_on_sigterm(
    pg_pipeline: Pipeline, pooled_postgres_url: str, tmp_path: Path
) -> None:
    instance = pg_pipeline.instance  # this process's: on PostgreSQL's own socket
    env = os.environ.copy()  # the fixture's: this instance, DuckDB file, fake OKX, Postgres
    env["COINSUM_PG_URL"] = pooled_postgres_url  # the services': through the pooler
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    log = tmp_path / "services.log"
    env["COINSUM_CODE_SERVER"] = f"127.0.0.1:{free_port()}"
    services = start_services(env, log, port)
    try:
        slots = [f"{DAY}-{h:02d}:{m:02d}" for h in range(24) for m in (0, 30)]
        backfill_id = launch_backfill(url, "basket_slots", slots)

        def started() -> list:  # the backfill's run, in the middle of its work
            return instance.get_run_records(
                RunsFilter(
                    statuses=[DagsterRunStatus.STARTED], tags={"dagster/backfill": backfill_id}
                )
            )

        wait_for("a started run of the backfill", 180, started)
        (killed,) = started()
        kill_unit(services["code"])  # the code server and the run's worker
        time.sleep(2)
        assert instance.get_run_by_id(killed.dagster_run.run_id).status == (
            DagsterRunStatus.STARTED
        ), "what a killed code server leaves: a run nobody finishes"
        # The backfill daemon (every 30 s) looks while no code server answers: the backfill
        # waits for it instead of being failed for good.
        wait_for(
            "the backfill daemon to put the backfill off until the code server is back",
            60,
            lambda: any(
                said in log.read_text()
                for said in ("will resume once it is available", "server and will retry")
            ),
        )

        services["code"] = start_service([COINSUM, "serve", "code"], env, log)
        wait_for_backfill(url, backfill_id, seconds=240)
        wait_for(
            "every slot materialized",
            120,
            lambda: (
                not instance.get_run_records(
                    RunsFilter(statuses=[DagsterRunStatus.QUEUED, DagsterRunStatus.STARTED])
                )
                and pg_pipeline.query("SELECT count(*) FROM coin_sum") == [(48,)]
            ),
        )
        assert instance.get_run_by_id(killed.dagster_run.run_id).status == (
            DagsterRunStatus.FAILURE
        )
        assert (
            f"coinsum serve code: run {killed.dagster_run.run_id} was left started, its worker "
            "gone; marked failed"
        ) in log.read_text()
        assert assert_values_exact(pg_pipeline) == 48 * 27
        assert not instance.event_log_storage.get_concurrency_info("okx").claimed_slots
        assert pooled_transactions(pooled_postgres_url) > 1000  # the services went through it
        # The export sensor starts its runs after the slots land: they finish, none stays started.
        unfinished = RunsFilter(
            statuses=[DagsterRunStatus.QUEUED, DagsterRunStatus.STARTING, DagsterRunStatus.STARTED]
        )
        wait_for("every run finished", 120, lambda: not instance.get_run_records(unfinished))
    finally:
        took = {name: stop(services[name]) for name in ("webserver", "daemon", "code")}
        for proc in services.values():
            if proc.poll() is None:
                kill_unit(proc)
    assert all(seconds <= STOP_SECONDS for seconds in took.values()), took
