"""Live collection: the newest slot, a minute after it starts, every 30 minutes; and the day's
exports, redone by Dagster's automation sensor whenever the day's slots change."""

from dagster import (
    AssetSelection,
    AutomationConditionSensorDefinition,
    DefaultScheduleStatus,
    DefaultSensorStatus,
    RunRequest,
    ScheduleEvaluationContext,
    define_asset_job,
    schedule,
)

from coinsum_pipeline.assets import basket_slots, day_exports
from coinsum_pipeline.partitions import current_slot, slot_key

slots_job = define_asset_job(
    "collect_slots",
    selection=AssetSelection.assets(basket_slots),
    description="Fetch and store one slot or a range of slots (used by the schedule and the CLI).",
)

exports_job = define_asset_job(
    "export_days",
    selection=AssetSelection.assets(day_exports),
    description="Write the CSVs and charts of one Beijing day or a range of days.",
)

export_on_new_slots = AutomationConditionSensorDefinition(
    "export_on_new_slots",
    target=AssetSelection.assets(day_exports),
    default_status=DefaultSensorStatus.RUNNING,
    minimum_interval_seconds=60,
    description="Re-exports each day whose slots were written since its last export.",
)


@schedule(
    job=slots_job,
    cron_schedule="1,31 * * * *",
    execution_timezone="Asia/Shanghai",
    default_status=DefaultScheduleStatus.RUNNING,
    description=(
        "Collects the slot that has just started, one minute into it. Its price is the candle's "
        "open, which is fixed from the slot's first trade on; the day's 00:00 base comes in the "
        "same fetch."
    ),
)
def live_slots(context: ScheduleEvaluationContext) -> RunRequest:
    """Built by hand because a partitioned-job schedule fires on the partition cron itself
    (:00/:30), before OKX has the new candle, and cannot be offset for ``*/30``."""
    key = slot_key(current_slot(context.scheduled_execution_time))
    return RunRequest(run_key=key, partition_key=key)
