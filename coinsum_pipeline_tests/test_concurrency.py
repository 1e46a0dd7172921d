"""Two backfills at once on one DuckDB file: the second waits its turn, neither fails."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from coinsum_pipeline_tests.helpers import Pipeline

pytestmark = pytest.mark.slow


def test_concurrent_backfills_queue_on_the_database(pipeline: Pipeline) -> None:
    coinsum = Path(sys.executable).parent / "coinsum"
    days = ["2026-01-05", "2026-01-06"]
    procs = [
        subprocess.Popen(
            [coinsum, "backfill", "--from", day, "--to", day],
            env=os.environ.copy(),
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        for day in days
    ]
    outputs = [proc.communicate(timeout=300)[0] for proc in procs]
    assert [proc.returncode for proc in procs] == [0, 0], outputs
    rows = pipeline.query("SELECT trade_date, count(*) FROM coin_prices GROUP BY 1 ORDER BY 1")
    assert [(str(day), n) for day, n in rows] == [(day, 48 * 27) for day in days]
