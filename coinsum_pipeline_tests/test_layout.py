"""The seams of the layout, kept: a Dagster-free core, one door to the database, one module for
Dagster's internals, and no product code that leans on the tests."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "coinsum_pipeline"


def modules_containing(text: str) -> set[str]:
    return {
        str(path.relative_to(PACKAGE))
        for path in PACKAGE.rglob("*.py")
        if text in path.read_text(encoding="utf-8")
    }


def test_the_core_loads_without_dagster_http_or_the_database() -> None:
    probe = (
        "import sys, coinsum_pipeline.core.compute, coinsum_pipeline.core.market, "
        "coinsum_pipeline.core.basket, coinsum_pipeline.core.reasons, coinsum_pipeline.core.slots;"
        "print(sorted({'dagster', 'requests', 'duckdb'} & set(sys.modules)))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert loaded.strip() == "[]"


def test_only_the_database_resource_connects_to_duckdb() -> None:
    assert modules_containing("duckdb.connect(") == {"warehouse/database.py"}


def test_dagster_internals_are_used_in_one_module() -> None:
    assert modules_containing("dagster._") == {"defs/dagster_compat.py"}


def test_product_code_never_imports_the_tests() -> None:
    assert modules_containing("coinsum_pipeline_tests") == set()
    bench = Path(__file__).resolve().parents[1] / "bench"
    assert not any("coinsum_pipeline_tests" in p.read_text() for p in bench.glob("*.py"))
