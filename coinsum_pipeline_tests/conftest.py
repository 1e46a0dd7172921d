"""Shared fixtures: a fake OKX on loopback, and a throw-away Dagster home and DuckDB file.

Every test runs with ``OKX_BASE_URL`` pointing at a closed loopback port unless it starts the
fake server, so no test can reach the real OKX even by mistake.
"""

from __future__ import annotations

import itertools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
import time_machine
from dagster import DagsterInstance

from coinsum_pipeline.core.basket import DEFAULT_COINS
from coinsum_pipeline.instance.daemon import (
    DaemonTurns,
    ForkRunLauncher,
    daemon_in_process,
    use_fork_launcher,
)
from coinsum_pipeline.instance.pgbouncer import PGBOUNCER, SERVER_SOCKET, trial_pgbouncer
from coinsum_pipeline.instance.redis import REDIS_SERVER, trial_redis
from coinsum_pipeline.okx.fake import FakeOKX
from coinsum_pipeline_tests.browser import free_port
from coinsum_pipeline_tests.helpers import Pipeline, beijing

# The longest tests first, so the workers start them together and the short ones fill in
# around them (xdist hands out tests in this order): in file order, one of them started last
# would run alone at the end of the suite. Those that mostly wait (a browser, Dagster's
# services and their loops) alternate with those that mostly compute (slow), so that the workers
# starting together do not all wait at once while CI's two cores idle.
WAITING, COMPUTING = ("browser", "services"), ("slow", "postgres")


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    def kinds(item: pytest.Item) -> set[str]:
        return {mark.name for mark in item.iter_markers()}

    waiting = [item for item in items if kinds(item) & set(WAITING)]
    computing = [item for item in items if item not in waiting and kinds(item) & set(COMPUTING)]
    rest = [item for item in items if item not in waiting and item not in computing]
    alternating = [
        item
        for pair in itertools.zip_longest(waiting, computing)
        for item in pair
        if item is not None
    ]
    items[:] = alternating + rest


@pytest.fixture(autouse=True)
def _no_real_okx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OKX_BASE_URL", "http://127.0.0.1:9")


@pytest.fixture(autouse=True)
def _a_board_port_of_its_own(monkeypatch: pytest.MonkeyPatch) -> None:
    """`coinsum dev` and the demo start the board: on a free port, not the 3001 of a board the
    machine may be running, nor of another test's."""
    monkeypatch.setenv("COINSUM_BOARD_PORT", str(free_port()))


@pytest.fixture
def fake_okx(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeOKX]:
    with FakeOKX() as okx:
        monkeypatch.setenv("OKX_BASE_URL", okx.url)
        yield okx


@pytest.fixture
def clock_at() -> Iterator[Callable[[str], datetime]]:
    """``clock_at("2026-01-10 03:18")`` sets the clock of the whole process (coinsum's, Dagster's,
    the fake OKX's) to that Beijing time, ticking on from there, until the test ends."""
    travels: list[time_machine.travel] = []

    def at(text: str) -> datetime:
        moment = beijing(text)
        travels.append(time_machine.travel(moment, tick=True))
        travels[-1].start()
        return moment

    yield at
    for travel in reversed(travels):
        travel.stop()


@pytest.fixture
def postgres_url() -> Iterator[str]:
    """A new, empty PostgreSQL database for one test's Dagster instance, on the local server's
    Unix socket (``scripts/postgres`` installs and starts it; CI runs these tests, elsewhere
    they are skipped when no server answers). Dropped after the test."""
    import psycopg2

    socket = SERVER_SOCKET  # where trial_pgbouncer expects the URL to point
    try:
        admin = psycopg2.connect(dbname="postgres", host=socket)
    except psycopg2.OperationalError as exc:
        if os.environ.get("CI"):
            raise
        pytest.skip(f"no PostgreSQL here (scripts/postgres starts one): {exc}")
    admin.autocommit = True
    name = f"coinsum_test_{uuid.uuid4().hex[:12]}"
    with admin.cursor() as cursor:
        cursor.execute(f'CREATE DATABASE "{name}"')
    try:
        yield f"postgresql+psycopg2:///{name}?host={socket}"
    finally:
        _drop(admin, name)
        admin.close()


@pytest.fixture
def redis_url() -> Iterator[str]:
    """A Redis of the test's own (Debian's ``redis-server``, which ``scripts/test`` installs):
    the broker of the Celery run workers."""
    if not REDIS_SERVER.exists():
        if os.environ.get("CI"):
            raise FileNotFoundError(f"{REDIS_SERVER}: scripts/test installs it")
        pytest.skip(f"no Redis here ({REDIS_SERVER}; scripts/test installs it)")
    with trial_redis() as url:
        yield url


@pytest.fixture
def pooled_postgres_url(postgres_url: str) -> Iterator[str]:
    """``postgres_url`` through PgBouncer set up as production's (``deploy/pgbouncer.ini``) on
    a socket of its own, as the services reach the instance in production. Stopped (its
    connections closed) before the database is dropped."""
    if not PGBOUNCER.exists():
        if os.environ.get("CI"):
            raise FileNotFoundError(f"{PGBOUNCER}: scripts/postgres installs it")
        pytest.skip(f"no PgBouncer here ({PGBOUNCER}; scripts/postgres installs it)")
    with trial_pgbouncer(postgres_url) as (url, _):
        yield url


def _drop(admin: Any, name: str) -> None:  # a psycopg2 connection
    """Drop the test's database. FORCE ends the test's own connections, but not an autovacuum
    worker busy on it (the server's, not ours to end): that one finishes within moments."""
    import psycopg2

    for attempt in range(40):
        try:
            with admin.cursor() as cursor:
                cursor.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
            return
        except psycopg2.errors.InsufficientPrivilege:
            if attempt == 39:
                raise
            time.sleep(0.25)


def _pipeline(
    fake_okx: FakeOKX, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Pipeline]:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("COINSUM_DB", str(tmp_path / "coinsum.duckdb"))
    monkeypatch.setenv("COINSUM_EXPORTS", str(tmp_path / "exports"))
    monkeypatch.setenv("COINSUM_COINS", ",".join(DEFAULT_COINS))
    from coinsum_pipeline.instance.home import dagster_home

    dagster_home()
    with DagsterInstance.get() as instance:
        yield Pipeline(fake_okx, instance, tmp_path / "coinsum.duckdb", tmp_path / "exports")


@pytest.fixture
def pipeline(
    fake_okx: FakeOKX, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Pipeline]:
    """The fake OKX, a DuckDB file, exports and a Dagster instance on SQLite, all in tmp_path."""
    yield from _pipeline(fake_okx, tmp_path, monkeypatch)


@pytest.fixture
def pg_pipeline(
    fake_okx: FakeOKX, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, postgres_url: str
) -> Iterator[Pipeline]:
    """The same, with the Dagster instance on PostgreSQL, as in production."""
    monkeypatch.setenv("COINSUM_PG_URL", postgres_url)
    yield from _pipeline(fake_okx, tmp_path, monkeypatch)


@pytest.fixture
def daemon(pipeline: Pipeline, tmp_path: Path) -> Iterator[DaemonTurns]:
    """The daemon's turns in this process on the pipeline's instance, each run it launches in a
    forked process (which shares the test's clock). Turns a minute apart can come a little
    sooner than a sensor's minimum interval allows (the clock ticks on during a turn): take
    them two minutes apart."""
    use_fork_launcher(Path(os.environ["DAGSTER_HOME"]))
    ForkRunLauncher.output = tmp_path / "runs.log"
    with DagsterInstance.get() as instance, daemon_in_process(instance) as turns:
        yield turns
