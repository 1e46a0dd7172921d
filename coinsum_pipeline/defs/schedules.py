"""The schedules: live collection (each slot as it starts, at :00 and :30 Beijing time), the
day so far again every three hours, and yesterday again at 00:03.

Why collect slots twice: the live schedule stores a day in 48 runs, one per slot. Collected
again in one run (the same values: an open price never changes; a late candle gets filled), the
slots are materialized by that one run, their live runs are superseded, and the hourly tidy can
delete them, with the previous re-collection of the day. So the instance holds the live runs of
a few hours at most (see instance/tidy.py), and each stored day keeps one run of slots and one of
exports, not a hundred.
"""

from collections.abc import Callable
from datetime import datetime, timedelta

from dagster import (
    DefaultScheduleStatus,
    RunRequest,
    ScheduleDefinition,
    ScheduleEvaluationContext,
    SkipReason,
    build_schedule_from_partitioned_job,
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
from coinsum_pipeline.defs.constants import RECOLLECT_TAG
from coinsum_pipeline.defs.dagster_compat import partition_tags
from coinsum_pipeline.defs.jobs import collect_slots
from coinsum_pipeline.defs.partitions import FIRST_DAY


def _collecting(cron: str, description: str) -> Callable[[Callable], ScheduleDefinition]:
    """A schedule of ``collect_slots`` runs on Beijing time, on by default."""
    return schedule(
        job=collect_slots,
        cron_schedule=cron,
        execution_timezone="Asia/Shanghai",
        default_status=DefaultScheduleStatus.RUNNING,
        description=description,
    )


# The slot that has just started, at its start: the scheduler wakes at the top of each minute.
# Its price is the open of its candle, fixed by its first trade a moment in (the run waits a
# little for a coin that has not traded yet, see okx/fetch.py); its day's 00:00 base comes in
# the same fetch. The partitions end one slot ahead, so the newest partition is that slot.
live_slots = build_schedule_from_partitioned_job(
    collect_slots,
    name="live_slots",
    default_status=DefaultScheduleStatus.RUNNING,
    description=(
        "Collects each slot as it starts, at :00 and :30 Beijing time (Asia/Shanghai): its "
        "price is the open of its OKX candle, fixed from the slot's first trade on; the day's "
        "00:00 base comes in the same fetch."
    ),
)


def _collect_again(first: datetime, last: datetime, name: str) -> RunRequest | SkipReason:
    """One run of the slots ``first`` to ``last``, tagged ``name``."""
    if first.date() < FIRST_DAY:
        return SkipReason(f"{first.date()} is before the first partition day {FIRST_DAY}")
    keys = slot_key(first), slot_key(last)
    return RunRequest(
        run_key=f"recollect:{name}:{keys[1]}",
        tags={**partition_tags(*keys), RECOLLECT_TAG: name},
    )


@_collecting(
    "3 3-21/3 * * *",
    (
        "Every three hours from 03:03 to 21:03 Beijing time, collects today's slots so far "
        "(00:00 to the slot that has just started) again in one run: the same values (a late "
        "candle filled), and the live runs since the last re-collection, with that run, left "
        "for the hourly tidy to delete."
    ),
)
def recollect_today(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    now = current_slot(context.scheduled_execution_time)
    return _collect_again(day_start(now.date()), now, "today")


@_collecting(
    "3 0 * * *",
    (
        "At 00:03 Beijing time, collects yesterday's 48 slots again in one run: the same values "
        "(a late candle filled), and the day's last live runs and its last re-collection left "
        "for the hourly tidy to delete."
    ),
)
def recollect_yesterday(context: ScheduleEvaluationContext) -> RunRequest | SkipReason:
    today = context.scheduled_execution_time.astimezone(BEIJING).date()
    first = day_start(today - timedelta(days=1))
    return _collect_again(first, first + SLOT * (SLOTS_PER_DAY - 1), "yesterday")
