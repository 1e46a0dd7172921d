"""The Dagster partitions: one per 30-minute Beijing slot, one per Beijing day.

Dagster fixes a partitions definition when the code location loads, so ``COINSUM_START`` is read
then (restart, or reload the location, after changing it); ``FIRST_DAY`` is that same value for
everything else that needs it.
"""

from __future__ import annotations

from dagster import DailyPartitionsDefinition, TimeWindowPartitionsDefinition

from coinsum_pipeline.core.slots import KEY_FORMAT, day_start, parse_day
from coinsum_pipeline.settings import value

FIRST_DAY = parse_day(value("COINSUM_START"), "COINSUM_START")

# Keys like 2026-01-03-00:00 (Beijing); end_offset=1: the running slot is a partition once it
# starts, so the live schedule can collect it.
SLOT_PARTITIONS = TimeWindowPartitionsDefinition(
    cron_schedule="*/30 * * * *",
    timezone="Asia/Shanghai",
    start=day_start(FIRST_DAY).strftime(KEY_FORMAT),
    fmt=KEY_FORMAT,
    end_offset=1,
)

DAY_PARTITIONS = DailyPartitionsDefinition(
    start_date=FIRST_DAY.isoformat(), timezone="Asia/Shanghai", end_offset=1
)
