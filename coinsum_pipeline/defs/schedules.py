"""The schedules: live collection (the newest slot, a minute after it starts, every 30
minutes), the morning's slots again at 12:03, each night yesterday again in one run, and hourly
housekeeping.

Why collect slots twice: the live schedule stores a day in 48 runs, one per slot. Collected
again in one run (the same values: an open price never changes; a late candle gets filled), the
slots are materialized by that one run, their live runs are superseded, and housekeeping can
delete them. At noon that is the morning's 24 live runs, so the instance holds half a day of
them at most; at night the whole day, which then keeps one run of slots and one of exports in
the instance, not a hundred (see housekeeping.py).
"""

from collections.abc import Callable
from datetime import date, timedelta

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    schedule,
)

from coinsum_pipeline.core.slots import (
    BEIJING,
    SLOT,
    SLOTS_PER_DAY,
    current_slot,
    day_start,
    slot_key,
)
from coinsum_pipeline.defs.dagster_compat import partition_tags
from coinsum_pipeline.defs.jobs import housekeeping, slots_job
from coinsum_pipeline.defs.partitions import FIRST_DAY

RECOLLECT_TAG = "coinsum/recollect"


def _collecting(cron: str, description: str) -> Callable[[Callable], ScheduleDefinition]:
    """A schedule of ``collect_slots`` runs on Beijing time, on by default."""
    return schedule(
        job=slots_job,
        cron_schedule=cron,
        execution_timezone="Asia/Shanghai",
        default_status=DefaultScheduleStatus.RUNNING,
        description=description,
    )


@_collecting(
    "1,31 * * * *",
    (
        "Collects the slot that has just started, one minute into it: at :01 and :31 Beijing "
        "time (Asia/Shanghai). Its price is the candle's open, which is fixed from the slot's "
        "first trade on; the day's 00:00 base comes in the same fetch."
    ),
)
def live_slots(context: ScheduleEvaluationContext) -> RunRequest:
    """Built by hand because a partitioned-job schedule fires on the partition cron itself
    (:00/:30), before OKX has the new candle, and cannot be offset for ``*/30``."""
    key = slot_key(current_slot(context.scheduled_execution_time))
    return RunRequest(run_key=key, partition_key=key)


def _collect_again(day: date, count: int, name: str) -> RunRequest | SkipReason:
    """One run of the first ``count`` slots of ``day`` (from 00:00), tagged ``name``."""
    if day < FIRST_DAY:
        return SkipReason(f"{day} is before the first partition day {FIRST_DAY}")
    keys = slot_key(day_start(day)), slot_key(day_start(day) + SLOT * (count - 1))
    return RunRequest(
        run_key=f"recollect:{name}:{day}", tags={**partition_tags(*keys), RECOLLECT_TAG: name}
    )


@_collecting(
    "3 12 * * *",
    (
        "At 12:03 Beijing time, collects today's 24 morning slots (00:00 to 11:30) again in one "
        "run: the same values (a late candle filled), and the morning's 24 live runs left for "
        "housekeeping to delete."
    ),
)
def recollect_morning(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    today = context.scheduled_execution_time.astimezone(BEIJING).date()
    return _collect_again(today, SLOTS_PER_DAY // 2, "morning")


@_collecting(
    "3 4 * * *",
    (
        "At 04:03 Beijing time, collects yesterday's 48 slots again in one run: the same values "
        "(a late candle filled), and the day's live runs left for housekeeping to delete."
    ),
)
def recollect_yesterday(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    yesterday = context.scheduled_execution_time.astimezone(BEIJING).date() - timedelta(days=1)
    return _collect_again(yesterday, SLOTS_PER_DAY, "yesterday")


# Hourly, between the live slots (12:05 and 04:05 right after the re-collections): a day's
# superseded export and freshness runs go within the hour, its live runs after the next
# re-collection.
tidy_hourly = ScheduleDefinition(
    name="tidy_hourly",
    job=housekeeping,
    cron_schedule="5 * * * *",
    execution_timezone="Asia/Shanghai",
    default_status=DefaultScheduleStatus.RUNNING,
    description="Housekeeping at :05 past each hour: see coinsum_pipeline/housekeeping.py.",
)
