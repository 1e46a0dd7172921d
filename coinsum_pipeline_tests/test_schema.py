"""A database from an earlier release opens in this one: migrated in one transaction with every
value kept, or refused, naming the version, when it comes from a newer coinsum."""

from __future__ import annotations

import gzip
import shutil
from pathlib import Path

import duckdb
import pytest

from coinsum_pipeline.cli import main
from coinsum_pipeline.warehouse import schema
from coinsum_pipeline.warehouse.schema import (
    SCHEMA_VERSION,
    SchemaError,
    ensure_schema,
    schema_version,
)
from coinsum_pipeline_tests.helpers import Pipeline

# Written by coinsum's first schema (before versions were recorded): 2026-01-05 for BTC, ETH,
# SOL, NEW (listed 09:10) and NOPE (no such swap), ETH without candles 04:00 to 05:00.
VERSION_1 = Path(__file__).parent / "data" / "schema_v1.duckdb.gz"
V1_BASKET = "BTC,ETH,SOL,NEW,NOPE"
TABLES = {
    "coin_prices": "SELECT * FROM coin_prices ORDER BY slot_start, coin",
    "missing_values": "SELECT * FROM missing_values ORDER BY slot_start, coin",
    "coin_sum": "SELECT slot_start, trade_date, slot_time, slot_ts_ms, sum_pct, coins_reported, "
    "coins_expected, complete, written_at FROM coin_sum ORDER BY slot_start",
}


def unpack_version_1(path: Path) -> Path:
    with gzip.open(VERSION_1) as packed, path.open("wb") as file:
        shutil.copyfileobj(packed, file)
    return path


def rows(path: Path) -> dict[str, list[tuple]]:
    with duckdb.connect(str(path), read_only=True) as conn:
        return {name: conn.execute(query).fetchall() for name, query in TABLES.items()}


@pytest.mark.slow
def test_a_version_1_file_is_migrated_with_every_value_kept(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    unpack_version_1(pipeline.db)
    with duckdb.connect(str(pipeline.db), read_only=True) as conn:
        assert schema_version(conn) == 1
    before = rows(pipeline.db)
    assert [len(before[t]) for t in TABLES] == [141, 99, 48]

    monkeypatch.setenv("COINSUM_COINS", "")  # the file's own basket
    assert main(["backfill", "--from", "2026-01-06", "--to", "2026-01-06"]) == 0

    after = rows(pipeline.db)
    for table in TABLES:
        assert after[table][: len(before[table])] == before[table], table
    assert pipeline.query("SELECT version, note FROM coinsum_schema") == [
        (SCHEMA_VERSION, "migrated from version 1")
    ]
    assert pipeline.query("SELECT DISTINCT basket FROM coin_sum") == [(V1_BASKET,)]
    assert pipeline.query("SELECT effective_from::TEXT, coins, previous FROM baskets") == [
        ("2026-01-05", V1_BASKET, None)
    ]
    coverage = pipeline.query(
        "SELECT trade_date::TEXT, slots_stored, coin_values FROM daily_coverage ORDER BY 1"
    )
    # The next day over the file's basket: here OKX lists neither NEW nor NOPE, 3 coins x 48.
    assert coverage == [("2026-01-05", 48, 141), ("2026-01-06", 48, 144)]
    assert pipeline.query(
        "SELECT count(*) FROM day_table WHERE trade_date = DATE '2026-01-05' AND BTC IS NOT NULL"
    ) == [(48,)]


def test_a_failed_migration_leaves_the_file_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = unpack_version_1(tmp_path / "v1.duckdb")
    before = rows(path)

    def half_done(conn: duckdb.DuckDBPyConnection) -> None:
        conn.execute("DROP TABLE coin_sum")
        raise RuntimeError("the machine went down mid-migration")

    monkeypatch.setitem(schema.MIGRATIONS, 1, half_done)
    with duckdb.connect(str(path)) as conn, pytest.raises(RuntimeError, match="mid-migration"):
        ensure_schema(conn)
    with duckdb.connect(str(path), read_only=True) as conn:
        assert schema_version(conn) == 1
    assert rows(path) == before


def test_a_file_from_a_newer_coinsum_is_refused_naming_both_versions(tmp_path: Path) -> None:
    path = tmp_path / "new.duckdb"
    with duckdb.connect(str(path)) as conn:
        ensure_schema(conn)
        conn.execute("INSERT INTO coinsum_schema (version) VALUES (?)", [SCHEMA_VERSION + 1])
    with duckdb.connect(str(path)) as conn, pytest.raises(SchemaError) as refused:
        ensure_schema(conn)
    assert f"schema version {SCHEMA_VERSION + 1}, written by a newer coinsum" in str(refused.value)
    assert f"reads up to version {SCHEMA_VERSION}" in str(refused.value)
