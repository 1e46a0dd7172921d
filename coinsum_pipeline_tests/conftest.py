"""Shared fixtures: a fake OKX on loopback, and a throw-away Dagster home and DuckDB file.

Every test runs with ``OKX_BASE_URL`` pointing at a closed loopback port unless it starts the
fake server, so no test can reach the real OKX even by mistake.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import date, datetime
from pathlib import Path

import duckdb
import pytest
import time_machine
from dagster import DagsterInstance

from coinsum_pipeline.basket import DEFAULT_COINS
from coinsum_pipeline.partitions import BEIJING, day_start, epoch_ms
from coinsum_pipeline_tests.fake_okx import FakeOKX


@pytest.fixture(autouse=True)
def _no_real_okx(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OKX_BASE_URL", "http://127.0.0.1:9")


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


@dataclass
class Pipeline:
    """A pipeline wired to the fake OKX, with its own Dagster instance and DuckDB file."""

    okx: FakeOKX
    instance: DagsterInstance
    db: Path
    exports: Path
    printed: str = ""  # what a command run while setting it up printed

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(str(self.db), read_only=True) as conn:
            return conn.execute(sql, params or []).fetchall()


@pytest.fixture
def pipeline(
    fake_okx: FakeOKX, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Pipeline]:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "dagster_home"))
    monkeypatch.setenv("COINSUM_DB", str(tmp_path / "coinsum.duckdb"))
    monkeypatch.setenv("COINSUM_EXPORTS", str(tmp_path / "exports"))
    monkeypatch.setenv("COINSUM_COINS", ",".join(DEFAULT_COINS))
    from coinsum_pipeline.settings import dagster_home

    dagster_home()
    with DagsterInstance.get() as instance:
        yield Pipeline(fake_okx, instance, tmp_path / "coinsum.duckdb", tmp_path / "exports")


def beijing(text: str) -> datetime:
    """'2026-01-05 13:00' in Beijing time."""
    return datetime.fromisoformat(text).replace(tzinfo=BEIJING)


def served_open(okx: FakeOKX, inst_id: str, ts: int) -> float:
    """The open OKX served for a 30m candle, asked of the fake the way the client asks."""
    rows = okx.candle_rows(
        "/api/v5/market/history-candles",
        {"instId": inst_id, "bar": "30m", "after": str(ts + 1), "before": str(ts - 1)},
    )
    assert len(rows) == 1 and int(rows[0][0]) == ts
    return float(rows[0][1])


def real_rows(inst_id: str, bar: str) -> dict[int, list[str]]:
    """The real OKX candles in shared/okx-real, by ts."""
    from coinsum_pipeline_tests.fake_okx import REAL_DATA

    doc = json.loads((REAL_DATA / f"{inst_id}_{bar}.json").read_text())
    return {int(row[0]): row for row in doc["rows"]}


def midnight_ms(day: date) -> int:
    return epoch_ms(day_start(day))
