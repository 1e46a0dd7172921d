"""What `dagster dev` loads: the code location, its partitions and the live schedule."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from datetime import datetime
from pathlib import Path

import pytest
from dagster import AssetKey, DefaultScheduleStatus, build_schedule_context

from coinsum_pipeline.core.slots import SLOT, day_start, slot_key
from coinsum_pipeline.definitions import defs
from coinsum_pipeline.defs.partitions import FIRST_DAY
from coinsum_pipeline_tests.helpers import beijing

ROOT = Path(__file__).resolve().parents[1]


def validate_workspace(home: Path, **settings: str) -> subprocess.CompletedProcess:
    """``dagster definitions validate`` on the workspace, as Dagster loads the code location."""
    (home / "dagster.yaml").symlink_to(ROOT / "dagster.yaml")
    return subprocess.run(
        [
            Path(sys.executable).parent / "dagster",
            "definitions",
            "validate",
            "-w",
            "workspace.yaml",
        ],
        cwd=ROOT,
        env={**os.environ, "DAGSTER_HOME": str(home), **settings},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_workspace_loads_without_errors(tmp_path: Path) -> None:
    result = validate_workspace(tmp_path)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "Validation successful" in result.stdout + result.stderr


@pytest.mark.parametrize(
    ("variable", "typed", "told"),
    [
        ("COINSUM_COLORS", "purple", "use cn (red up, green down"),
        ("COINSUM_ALERT_FORMAT", "wechat", "use one of json, slack, dingtalk, feishu"),
        ("COINSUM_ALERT_LEVELS", "20;-20", "give numbers separated by commas"),
    ],
)
def test_a_bad_choice_setting_stops_the_code_location_loading_naming_it(
    tmp_path: Path, variable: str, typed: str, told: str
) -> None:
    """A typo in a choice or list setting fails when Dagster loads the code location, with the
    variable, what was typed and what it may be, not later in each run that reads it."""
    result = validate_workspace(tmp_path, **{variable: typed})
    output = result.stdout + result.stderr
    assert result.returncode != 0
    assert f"{variable} is {typed!r}: {told}" in output, output[-3000:]


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
