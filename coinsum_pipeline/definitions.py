"""The Dagster code location: assets, checks, jobs, schedules, sensors and the resources they use.

Where to add things: an asset in ``defs/assets.py``, a check in ``defs/checks.py``, a job in
``defs/jobs.py``, a schedule in ``defs/schedules.py``, a sensor in ``defs/sensors.py`` (each
listed here too), and a setting as ``defs/resources.py`` says. What keeps the instance itself
(the hourly tidy) comes from ``instance/``.
"""

from __future__ import annotations

from dagster import Definitions, in_process_executor

from coinsum_pipeline.defs.assets import basket_slots, day_exports
from coinsum_pipeline.defs.checks import (
    base_matches_okx,
    freshness_check,
    no_extreme_moves,
    slot_completeness,
)
from coinsum_pipeline.defs.jobs import collect_slots, deliver_alert, export_days
from coinsum_pipeline.defs.resources import build_resources
from coinsum_pipeline.defs.schedules import live_slots, recollect_today, recollect_yesterday
from coinsum_pipeline.defs.sensors import (
    alert_on_new_slots,
    export_on_new_slots,
    freshness_sensor,
    gap_repair,
)
from coinsum_pipeline.instance.tidy import tidy, tidy_hourly


def build_defs() -> Definitions:
    """The definitions with resources configured from the environment as it is now: Dagster's
    processes load them once; ``coinsum backfill`` builds them for each run it starts."""
    return Definitions(
        assets=[basket_slots, day_exports],
        asset_checks=[slot_completeness, base_matches_okx, no_extreme_moves, freshness_check],
        jobs=[collect_slots, export_days, deliver_alert, tidy],
        schedules=[live_slots, recollect_today, recollect_yesterday, tidy_hourly],
        sensors=[gap_repair, export_on_new_slots, freshness_sensor, alert_on_new_slots],
        resources=build_resources(),
        # Every run's steps in one process: a run's steps are small (one fetch, three checks),
        # a subprocess per step cost more than the step, and each added a dozen events.
        executor=in_process_executor,
    )


defs = build_defs()
