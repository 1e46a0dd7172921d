"""The Dagster code location: assets, checks, jobs, schedules, sensors and the resources they use.

Settings come from the environment (``OKX_BASE_URL``, ``COINSUM_DB``, ``COINSUM_COINS``) as
Dagster ``EnvVar``s, read when each run starts; unset ones take the defaults in settings.py.
"""

from __future__ import annotations

from dagster import Definitions

from coinsum_pipeline.assets import basket_slots, day_exports
from coinsum_pipeline.basket import BasketResource
from coinsum_pipeline.checks import (
    base_matches_okx,
    freshness_job,
    freshness_schedule,
    newest_slot_fresh,
    no_extreme_moves,
    slot_completeness,
)
from coinsum_pipeline.exports import ExportFolder
from coinsum_pipeline.okx import OKXResource
from coinsum_pipeline.schedules import export_on_new_slots, exports_job, live_slots, slots_job
from coinsum_pipeline.sensors import gap_repair
from coinsum_pipeline.settings import int_setting, setting
from coinsum_pipeline.storage import CONNECTION_CONFIG, CoinsumDatabase

defs = Definitions(
    assets=[basket_slots, day_exports],
    asset_checks=[slot_completeness, base_matches_okx, no_extreme_moves, newest_slot_fresh],
    jobs=[slots_job, exports_job, freshness_job],
    schedules=[live_slots, freshness_schedule],
    sensors=[gap_repair, export_on_new_slots],
    resources={
        "okx": OKXResource(
            base_url=setting("OKX_BASE_URL"), timeout_seconds=int_setting("OKX_TIMEOUT_SECONDS")
        ),
        "duckdb": CoinsumDatabase(
            database=setting("COINSUM_DB"),
            wait_seconds=int_setting("COINSUM_DB_WAIT_SECONDS"),
            connection_config=CONNECTION_CONFIG,
        ),
        "basket": BasketResource(coins=setting("COINSUM_COINS")),
        "exports": ExportFolder(path=setting("COINSUM_EXPORTS")),
    },
)
