"""Dagster upgrades an operator can take: an instance written under the previous release of
Dagster's family (1.12, dagster-postgres 0.28) opens and migrates under the pinned one, on SQLite
and on PostgreSQL, as docs/operations.md#upgrading has the operator do it.

The previous release is installed by uv into a venv of its own (once, on one test worker), with
coinsum's other dependencies at the versions this venv has, so that Dagster's family is what
differs (what those need beneath them, uv resolves). coinsum's
own code runs under it from this checkout: 1.12.13 is the first release its definitions load
on (partitioned asset checks), and the test takes it, the furthest back coinsum can come from."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from datetime import timedelta
from importlib.metadata import version
from pathlib import Path

import pytest
from dagster import AssetKey, DagsterInstance, DagsterRunStatus, RunsFilter

from coinsum_pipeline.core.slots import day_start, parse_day, slot_key, slots_in
from coinsum_pipeline.settings import PROJECT_ROOT

# One worker installs the previous release, once, for both storages (scripts/test: loadgroup).
pytestmark = [pytest.mark.slow, pytest.mark.xdist_group("previous_dagster")]

PREVIOUS = ("dagster==1.12.13", "dagster-postgres==0.28.13", "dagster-duckdb==0.28.13")
# What coinsum imports beside Dagster: kept at this venv's versions.
ALSO = ("duckdb", "pandas", "requests", "matplotlib", "starlette", "uvicorn")
BIN = Path(sys.executable).parent
COINSUM_MAIN = "import sys; from coinsum_pipeline.cli import main; sys.exit(main(sys.argv[1:]))"


@pytest.fixture(scope="session")
def previous_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    venv = tmp_path_factory.mktemp("previous-dagster") / "venv"
    subprocess.run([BIN / "uv", "venv", "-q", "-p", sys.executable, venv], check=True)
    python = venv / "bin" / "python"
    same = [f"{name}=={version(name)}" for name in ALSO]
    subprocess.run(
        [BIN / "uv", "pip", "install", "-q", "--python", python, *PREVIOUS, *same],
        check=True,
        timeout=600,
    )
    return python


def backfill(python: Path, day: str) -> None:
    """``coinsum backfill`` of ``day`` under ``python``'s Dagster, on the test's settings."""
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    done = subprocess.run(
        [python, "-c", COINSUM_MAIN, "backfill", "--from", day, "--to", day],
        env=env,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert done.returncode == 0, done.stdout[-2000:] + done.stderr[-2000:]
    assert "0 missing" in done.stdout, done.stdout


def slots_of(*days: str) -> set[str]:
    starts = [day_start(parse_day(day)) for day in days]
    return {
        slot_key(slot) for start in starts for slot in slots_in(start, start + timedelta(days=1))
    }


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


@pytest.mark.parametrize(
    "storage", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)]
)
def test_an_instance_of_the_previous_release_migrates_with_every_partition_kept(
    storage: str,
    previous_python: Path,
    fake_okx: object,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    request: pytest.FixtureRequest,
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("COINSUM_DB", str(tmp_path / "coinsum.duckdb"))
    monkeypatch.setenv("COINSUM_EXPORTS", str(tmp_path / "exports"))
    if storage == "postgres":
        monkeypatch.setenv("COINSUM_PG_URL", request.getfixturevalue("postgres_url"))
    backfill(previous_python, "2026-01-05")
    stored = sha256(tmp_path / "coinsum.duckdb")

    migrated = subprocess.run(
        [BIN / "dagster", "instance", "migrate"], capture_output=True, text=True, timeout=120
    )
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    assert sha256(tmp_path / "coinsum.duckdb") == stored, "the migration touched the DuckDB file"
    with DagsterInstance.get() as instance:
        partitions = instance.get_materialized_partitions(AssetKey("basket_slots"))
        assert partitions == slots_of("2026-01-05")
        runs = instance.get_run_records(RunsFilter(statuses=[DagsterRunStatus.SUCCESS]))
        assert runs, "the previous release's runs are still there"

    # The migrated instance takes new runs (the okx pool's slots live in it too).
    backfill(BIN / "python", "2026-01-06")
    with DagsterInstance.get() as instance:
        partitions = instance.get_materialized_partitions(AssetKey("basket_slots"))
        assert partitions == slots_of("2026-01-05", "2026-01-06")
        assert not instance.event_log_storage.get_concurrency_info("okx").claimed_slots
