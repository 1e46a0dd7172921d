"""What `dagster dev` loads: the code location, its partitions and the live schedule."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

from dagster import AssetKey, DefaultScheduleStatus, build_schedule_context

from coinsum_pipeline.core.slots import SLOT, day_start, slot_key
from coinsum_pipeline.definitions import defs
from coinsum_pipeline.defs.partitions import FIRST_DAY
from coinsum_pipeline_tests.helpers import beijing

ROOT = Path(__file__).resolve().parents[1]


def test_workspace_loads_without_errors(tmp_path: Path) -> None:
    env = {**os.environ, "DAGSTER_HOME": str(tmp_path)}
    (tmp_path / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
    result = subprocess.run(
        [
            Path(sys.executable).parent / "dagster",
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


def test_slot_partitions_start_at_first_day_and_include_the_running_slot(
    clock_at: Callable[[str], datetime],
) -> None:
    clock_at("2026-01-10 03:18")
    partitions = defs.resolve_assets_def(AssetKey("basket_slots")).partitions_def
    keys = partitions.get_partition_keys()
    first = day_start(FIRST_DAY)
    assert keys[:2] == [slot_key(first), slot_key(first + SLOT)]
    assert keys[-1] == "2026-01-10-03:00", "the running slot is the newest partition"
    assert len(keys) == int((beijing("2026-01-10 03:00") - first) / SLOT) + 1


def test_live_schedule_targets_the_slot_that_just_started() -> None:
    live_slots = defs.resolve_schedule_def("live_slots")
    assert live_slots.default_status == DefaultScheduleStatus.RUNNING
    assert live_slots.cron_schedule == "*/30 * * * *", "at each slot's start"
    assert live_slots.execution_timezone == "Asia/Shanghai"
    for fired, key in [
        ("2026-01-10 00:00", "2026-01-10-00:00"),
        ("2026-01-10 12:30", "2026-01-10-12:30"),
        ("2026-01-10 23:30", "2026-01-10-23:30"),
    ]:
        context = build_schedule_context(scheduled_execution_time=beijing(fired))
        (request,) = live_slots.evaluate_tick(context).run_requests
        assert (request.partition_key, request.run_key) == (key, key)
