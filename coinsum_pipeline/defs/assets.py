"""The assets. ``basket_slots``: one partition per 30-minute Beijing slot, holding every coin's
base, price and percent change, the missing values with their reasons, and the basket sum.
``day_exports``: one partition per Beijing day, the CSVs and charts users open.

One asset writes the three tables because they are one fact about a slot: Dagster records a few
events per asset per partition (tens of ms each), which dominate a long backfill, and a single
transaction means a slot is never half-written across tables.
"""

from collections import Counter
from datetime import timedelta

from dagster import (
    AssetDep,
    AssetExecutionContext,
    AutomationCondition,
    BackfillPolicy,
    Backoff,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    RetryPolicy,
    TimeWindowPartitionMapping,
    asset,
)

from coinsum_pipeline.core.basket import BasketError
from coinsum_pipeline.core.compute import compute_slot_tables
from coinsum_pipeline.core.reasons import MissingReason
from coinsum_pipeline.core.slots import days_in, slot_key, slots_in
from coinsum_pipeline.defs.constants import FAIL_FAST_TAG, SLOTS_PER_RUN
from coinsum_pipeline.defs.partitions import DAY_PARTITIONS, SLOT_PARTITIONS
from coinsum_pipeline.defs.resources import BasketResource, ExportFolder, OKXResource
from coinsum_pipeline.okx.client import OKXUnreachable
from coinsum_pipeline.okx.fetch import fetch_basket
from coinsum_pipeline.warehouse.database import CoinsumDatabase, DatabaseHeld, replace_slots
from coinsum_pipeline.warehouse.exports import Export, read_days, write_exports
from coinsum_pipeline.warehouse.schema import SchemaError

OKX_POOL = "okx"
OWNERS = ["team:coinsum-data"]


@asset(
    partitions_def=SLOT_PARTITIONS,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=SLOTS_PER_RUN),
    retry_policy=RetryPolicy(
        max_retries=3, delay=15, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
    ),
    pool=OKX_POOL,
    group_name="coinsum",
    owners=OWNERS,
    kinds={"duckdb", "python"},
    tags={"source": "okx"},
    description=(
        "Every coin of the basket at each 30-minute Beijing slot: the day's 00:00 base price, the "
        "slot price (open of the OKX 30m candle), the % change since 00:00, and the basket sum. "
        "Writes the DuckDB tables coin_prices, missing_values and coin_sum; a re-run replaces "
        "exactly its slots."
    ),
)
def basket_slots(
    context: AssetExecutionContext,
    okx: OKXResource,
    database: CoinsumDatabase,
    basket: BasketResource,
) -> MaterializeResult:
    window = context.partition_time_window
    slots = list(slots_in(window.start, window.end))
    try:
        history = database.baskets(context.log, basket.requested(), slots[0].date())
        coins = history.coins_of(slot.date() for slot in slots)
        context.log.info(
            f"fetching {len(coins)} coins for {len(slots)} slots "
            f"{context.partition_key_range.start} .. {context.partition_key_range.end}"
        )
        fetched = fetch_basket(okx.client, coins, slots, threads=okx.fetch_threads)
        tables = compute_slot_tables(slots, history.on, fetched)
        with database.write(context.log, history) as conn:
            replace_slots(conn, slots[0], slots[-1], tables)
    # A retry cannot help: the file is held, the basket or schema is refused, or OKX cannot be
    # reached at all (the client tried a few times; the message says what to change).
    except (DatabaseHeld, BasketError, SchemaError, OKXUnreachable) as refused:
        raise Failure(description=str(refused), allow_retries=False) from refused

    reasons = Counter(tables.missing["reason"])
    # Dagster copies a ranged run's metadata onto every slot of the range: named for the range.
    metadata: dict[str, object] = {
        "range_slots": len(slots),
        "range_values": len(tables.prices),
        "range_missing_values": len(tables.missing),
        "range_missing_by_reason": MetadataValue.json(dict(reasons)),
        # This step's requests for the slot prices; the checks' own requests come after it.
        "range_okx_price_requests": MetadataValue.json(okx.client.requests_made),
    }
    # Each slot's own numbers on its own materialization, which Dagster plots over time.
    for slot, reported, total in zip(
        slots, tables.sums["coins_reported"], tables.sums["sum_pct"], strict=True
    ):
        own = {"coins_reported": int(reported)} | ({"sum_pct": float(total)} if reported else {})
        context.add_asset_metadata(own, partition_key=slot_key(slot))
    failed = sorted(c for c, got in fetched.items() if got.failure == MissingReason.FETCH_FAILED)
    if failed:
        raise Failure(
            description=(
                f"OKX kept failing for {', '.join(failed)}; their slots are stored in "
                "missing_values as fetch_failed. Re-execute this run to fill them."
            ),
            metadata={**metadata, "failed_coins": MetadataValue.json(failed)},
            allow_retries=context.run.tags.get(FAIL_FAST_TAG) != "true",
        )
    return MaterializeResult(metadata=metadata)


# Export a day again whenever one of its slots was written since the day was last exported,
# once no slot run is in flight, for any day (a backfill's old days as well as today). A day
# whose export failed, or that has slots and was never exported, is asked for again each hour
# at :10 until it is exported: a failure shows on its partition, and is never silently dropped.
RETRY_EXPORTS_CRON = "10 * * * *"
EXPORT_WHEN_SLOTS_CHANGE = (
    (
        AutomationCondition.any_deps_updated().since_last_handled()
        | (
            AutomationCondition.cron_tick_passed(RETRY_EXPORTS_CRON, "Asia/Shanghai")
            & (
                AutomationCondition.execution_failed()
                | (
                    AutomationCondition.missing()
                    & AutomationCondition.any_deps_match(~AutomationCondition.missing())
                )
            )
        ).with_label("hourly, a day whose export failed or never ran")
    )
    & ~AutomationCondition.any_deps_in_progress()
    & ~AutomationCondition.in_progress()
).with_label("a slot of the day changed")


# A day's slots that have not started have no partition yet: today maps to its slots so far,
# so a request spanning today and earlier days (a repair after downtime, a new instance, a UI
# backfill up to today) is planned instead of refused.
SLOTS_SO_FAR = TimeWindowPartitionMapping(allow_nonexistent_upstream_partitions=True)


@asset(
    partitions_def=DAY_PARTITIONS,
    deps=[AssetDep(basket_slots, partition_mapping=SLOTS_SO_FAR)],
    backfill_policy=BackfillPolicy.single_run(),
    automation_condition=EXPORT_WHEN_SLOTS_CHANGE,
    group_name="coinsum",
    owners=OWNERS,
    kinds={"csv", "png"},
    description=(
        "Per Beijing day, in COINSUM_EXPORTS/YYYY-MM-DD/: the users' CSVs (full data, 27-coin "
        "sums, missing values; UTF-8 with BOM, Chinese headers), the 48 x 27 day table as CSV and "
        "as a colour-scaled image, and the curve of the 27-coin sum. Re-exported when its slots "
        "change. Each day's page shows its counts, previews of its curve and day table, and its "
        "sums; a run over several days also writes the files of the whole range."
    ),
)
def day_exports(
    context: AssetExecutionContext,
    database: CoinsumDatabase,
    exports: ExportFolder,
) -> MaterializeResult:
    window = context.partition_time_window
    days = days_in(window.start.date(), (window.end - timedelta(days=1)).date())
    with database.read() as conn:
        wanted = [(read_days(conn, day, day), exports.day(day)) for day in days]
        if len(days) > 1:
            wanted.append((read_days(conn, days[0], days[-1]), exports.ranges()))
    drawn = write_exports(wanted, exports.palette())
    written, whole = drawn[: len(days)], (drawn[-1] if len(days) > 1 else None)
    context.log.info(f"exported {len(days)} day(s) to {exports.path}")
    for day, export in zip(days, written, strict=True):
        # Each day's own numbers and pictures, however many days the run exported.
        context.add_asset_metadata(day_metadata(export), partition_key=day.isoformat())
    if whole is None:
        return MaterializeResult()
    # Copied onto every day of the range, so named for the range.
    return MaterializeResult(
        metadata={
            "range_days": len(days),
            "range_folder": MetadataValue.path(str(whole.folder)),
            "range_curve": MetadataValue.path(str(whole.files["curve"])),
        }
    )


def day_metadata(export: Export) -> dict[str, object]:
    """What a day's page shows: counts, where the files are, small previews of its curve and day
    table (the full PNGs are files: metadata is kept in the event log for good), and its sums."""
    return {
        "folder": MetadataValue.path(str(export.folder)),
        "full_rows": export.rows["full"],
        "sum_rows": export.rows["sum"],
        "missing_rows": export.rows["missing"],
        "curve": MetadataValue.md(export.previews["curve"]),
        "day_table": MetadataValue.md(export.previews["day_table"]),
        "day_table_image": MetadataValue.path(str(export.files["day_table_image"])),
        "sums_preview": MetadataValue.md(export.previews["sums"]),
    }
