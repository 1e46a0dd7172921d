"""The seams of the layout, kept: the layers, a Dagster-free core, one door to the database, two
modules for Dagster's internals, and no product code that leans on the tests."""

from __future__ import annotations

import ast
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


def test_dagster_internals_are_used_in_four_modules_and_the_daemon_turns() -> None:
    """What the definitions need, and what operating the instance needs (tidying it, the
    services' watch of the code server, the Celery workers' health, the daemon's turns in
    process): each is listed and explained in docs/architecture.md."""
    assert modules_containing("dagster._") == {
        "defs/dagster_compat.py",
        "instance/storage.py",
        "instance/code_watch.py",
        "instance/workers.py",
        "instance/daemon.py",
    }


# Each part of the package and its layer: a module imports only from its own layer or those
# below. The clients of the outside world (OKX, the DuckDB file, the webhook) know nothing of each
# other; the definitions sit above them; the code that operates Dagster itself (instance/) above
# the definitions; the entry points on top, where the command line may start the others.
LAYERS: dict[str, int] = {
    "core": 0,
    "settings": 0,
    "clock": 0,
    "web_ticks": 0,
    "okx": 1,
    "warehouse": 1,
    "webhook": 1,
    "defs": 2,
    "instance": 3,
    "definitions": 4,
    "backfill": 4,
    "cli": 4,
    "demo": 4,
    "board": 4,
}


def imported_parts(path: Path) -> set[str]:
    """The parts of coinsum_pipeline that ``path`` imports, at any depth in the module."""
    parts = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        elif isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        for name in names:
            if name.startswith("coinsum_pipeline."):
                parts.add(name.split(".")[1])
    return parts & set(LAYERS)


def test_every_module_imports_only_from_its_layer_or_below() -> None:
    wrong = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative == Path("__init__.py"):
            continue
        part = relative.parts[0].removesuffix(".py")
        assert part in LAYERS, f"{relative}: give coinsum_pipeline/{part} a layer in LAYERS"
        for other in imported_parts(path) - {part}:
            if LAYERS[other] > LAYERS[part] or LAYERS[other] == LAYERS[part] == 1:
                wrong.append(f"{relative} imports {other}")
    assert wrong == []


def test_product_code_never_imports_the_tests() -> None:
    assert modules_containing("coinsum_pipeline_tests") == set()
    bench = Path(__file__).resolve().parents[1] / "bench"
    assert not any("coinsum_pipeline_tests" in p.read_text() for p in bench.glob("*.py"))
