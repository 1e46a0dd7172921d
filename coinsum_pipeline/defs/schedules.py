"""The schedules: live collection (the newest slot, a minute after it starts, every 30
minutes) and daily housekeeping."""

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    schedule,
)

from coinsum_pipeline.core.slots import current_slot, slot_key
from coinsum_pipeline.defs.jobs import housekeeping, slots_job


@schedule(
    job=slots_job,
    cron_schedule="1,31 * * * *",
    execution_timezone="Asia/Shanghai",
    default_status=DefaultScheduleStatus.RUNNING,
    description=(
        "Collects the slot that has just started, one minute into it: at :01 and :31 Beijing "
        "time (Asia/Shanghai). Its price is the candle's "
        "open, which is fixed from the slot's first trade on; the day's 00:00 base comes in the "
        "same fetch."
    ),
)
def live_slots(context: ScheduleEvaluationContext) -> RunRequest:
    """Built by hand because a partitioned-job schedule fires on the partition cron itself
    (:00/:30), before OKX has the new candle, and cannot be offset for ``*/30``."""
    key = slot_key(current_slot(context.scheduled_execution_time))
    return RunRequest(run_key=key, partition_key=key)


# Daily, at a quiet time for the live slots (four minutes after one is collected).
tidy_daily = ScheduleDefinition(
    name="tidy_daily",
    job=housekeeping,
    cron_schedule="5 4 * * *",
    execution_timezone="Asia/Shanghai",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Housekeeping daily at 04:05 Beijing time: see coinsum_pipeline/housekeeping.py.",
)
