"""The slot asset: one partition per 30-minute Beijing slot, holding every coin's base, price
and percent change, the missing values with their reasons, and the basket sum.

One asset writes the three tables because they are one fact about a slot: Dagster records a few
events per asset per partition (tens of ms each), which dominate a long backfill, and a single
transaction means a slot is never half-written across tables.
"""

import warnings
from collections import Counter

from dagster import (
    AssetExecutionContext,
    BackfillPolicy,
    Backoff,
    BetaWarning,
    Failure,
    Jitter,
    MaterializeResult,
    MetadataValue,
    PreviewWarning,
    RetryPolicy,
    asset,
)

from coinsum_pipeline.basket import BasketResource
from coinsum_pipeline.compute import compute_slot_tables
from coinsum_pipeline.fetch import FETCH_FAILED, fetch_basket
from coinsum_pipeline.okx import OKXResource
from coinsum_pipeline.partitions import slot_partitions, slots_in
from coinsum_pipeline.storage import CoinsumDatabase, replace_slots

# Backfill policies (how Dagster runs a range as one run) and partitioned asset checks (checks
# shown per slot) are labelled beta/preview in Dagster 1.13; the notices are noise to users.
warnings.filterwarnings("ignore", message="Parameter `backfill_policy`", category=BetaWarning)
warnings.filterwarnings("ignore", message="Specifying a partitions_def", category=PreviewWarning)

SLOT_PARTITIONS = slot_partitions()
# 288 slots = 6 days: one 300-row candle page per coin per run, the fewest requests possible.
SLOTS_PER_RUN = 288
OKX_POOL = "okx"
# A run tagged with this reports fetch failures at once instead of retrying the step.
FAIL_FAST_TAG = "coinsum/fail_fast"


@asset(
    partitions_def=SLOT_PARTITIONS,
    backfill_policy=BackfillPolicy.multi_run(max_partitions_per_run=SLOTS_PER_RUN),
    retry_policy=RetryPolicy(
        max_retries=3, delay=15, backoff=Backoff.EXPONENTIAL, jitter=Jitter.PLUS_MINUS
    ),
    pool=OKX_POOL,
    group_name="coinsum",
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
    duckdb: CoinsumDatabase,
    basket: BasketResource,
) -> MaterializeResult:
    window = context.partition_time_window
    slots = list(slots_in(window.start, window.end))
    coins = basket.symbols()
    context.log.info(
        f"fetching {len(coins)} coins for {len(slots)} slots "
        f"{context.partition_key_range.start} .. {context.partition_key_range.end}"
    )
    fetched = fetch_basket(okx.client, coins, slots, threads=okx.fetch_threads)
    tables = compute_slot_tables(slots, coins, fetched)
    with duckdb.write(context.log) as conn:
        replace_slots(conn, slots[0], slots[-1], tables)

    reasons = Counter(tables.missing["reason"])
    metadata: dict[str, object] = {
        "slots": len(slots),
        "values": len(tables.prices),
        "missing_values": len(tables.missing),
        "missing_by_reason": MetadataValue.json(dict(reasons)),
        "okx_requests": MetadataValue.json(okx.client.requests_made),
    }
    if len(slots) == 1:
        row = tables.sums.iloc[0]
        metadata["coins_reported"] = int(row["coins_reported"])
        if row["coins_reported"]:
            metadata["sum_pct"] = float(row["sum_pct"])
    failed = sorted(c for c, got in fetched.items() if got.failure == FETCH_FAILED)
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
