"""Data-quality checks on the stored slots, shown per partition in the Dagster UI.

Each check reads what was stored (the readers' snapshot), so it judges the data users query,
not the run's memory of it. A run of up to a day of slots (live collection, the
re-collections, gap repair, a one-day backfill) records every slot's result, so the UI shows each
check on every partition. A longer run (a backfill's runs of up to 6 days) records each failing
slot's result and its passing slots once, in the run's summary: a result is one Dagster event,
and one per slot per check was most of a backfill's time (docs/performance.md). The UI then
shows those passing slots' checks as "skipped" by that run, and the run's summary says they
passed. A ranged run's summary has no partition.

- ``slot_completeness`` (warning): every coin of the basket reported, or which did not and why.
- ``base_matches_okx`` (error, blocking): each stored 00:00 base equals OKX's own 1D open for
  that Beijing day, and the tickers' ``sodUtc8`` on the current day.
- ``no_extreme_moves`` (warning): no coin moved more than ``COINSUM_MAX_MOVE_PCT`` in 30 minutes;
  a big move is flagged, never dropped.
- ``freshness_check`` (warning, Dagster's own time-partition freshness check): by 20 and 50
  minutes past each hour (Beijing), the slot that started at :00 or :30 is stored. Evaluated with
  every slot run, and by the ``freshness`` sensor when it could have become overdue.
"""

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime

import duckdb
from dagster import (
    AssetCheckEvaluation,
    AssetCheckExecutionContext,
    AssetCheckResult,
    AssetCheckSeverity,
    MetadataValue,
    asset_check,
    build_time_partition_freshness_checks,
)

from coinsum_pipeline import clock
from coinsum_pipeline.core.basket import ordered_union, swap_inst_id
from coinsum_pipeline.core.slots import SLOT, slot_key, slots_in
from coinsum_pipeline.defs.assets import basket_slots
from coinsum_pipeline.defs.constants import OVERDUE_AFTER
from coinsum_pipeline.defs.dagster_compat import latest_materializations
from coinsum_pipeline.defs.partitions import SLOT_PARTITIONS
from coinsum_pipeline.defs.resources import CheckLimits, OKXResource
from coinsum_pipeline.okx.client import OKXError
from coinsum_pipeline.okx.fetch import daily_opens
from coinsum_pipeline.warehouse.database import CoinsumDatabase

WARN = AssetCheckSeverity.WARN


@dataclass(frozen=True)
class Verdict:
    passed: bool
    description: str
    metadata: dict = field(default_factory=dict)


@dataclass
class StoredSlot:
    """What is stored for one slot, plus what the checks compare it with."""

    slot: datetime
    prices: dict[str, tuple[float, float]] = field(default_factory=dict)  # coin: (base, price)
    missing: dict[str, str] = field(default_factory=dict)  # coin: reason
    previous: dict[str, float] = field(default_factory=dict)  # coin: price 30 minutes earlier
    basket: tuple[str, ...] = ()  # the coins its sum is over, as stored


def load_slots(conn: duckdb.DuckDBPyConnection, slots: Sequence[datetime]) -> list[StoredSlot]:
    """The stored rows of ``slots`` (and the prices of the slot before the first)."""
    first, last = slots[0].replace(tzinfo=None), slots[-1].replace(tzinfo=None)
    stored = {s.replace(tzinfo=None): StoredSlot(s) for s in slots}
    for slot_start, coin, base, price in conn.execute(
        "SELECT slot_start, coin, base_price, price FROM coin_prices "
        "WHERE slot_start BETWEEN ? AND ?",
        [first - SLOT, last],
    ).fetchall():
        if slot_start in stored:
            stored[slot_start].prices[coin] = (base, price)
        if slot_start + SLOT in stored:
            stored[slot_start + SLOT].previous[coin] = price
    for slot_start, coin, reason in conn.execute(
        "SELECT slot_start, coin, reason FROM missing_values WHERE slot_start BETWEEN ? AND ?",
        [first, last],
    ).fetchall():
        stored[slot_start].missing[coin] = reason
    for slot_start, basket in conn.execute(
        "SELECT slot_start, basket FROM coin_sum WHERE slot_start BETWEEN ? AND ?", [first, last]
    ).fetchall():
        stored[slot_start].basket = tuple(basket.split(","))
    return list(stored.values())


def completeness(slot: StoredSlot) -> Verdict:
    """Judged against the slot's own stored basket, whatever basket later days have."""
    basket = slot.basket
    if not basket:
        return Verdict(False, "the slot is not stored", {"coins_reported": 0})
    absent = {c: slot.missing.get(c, "not stored") for c in basket if c not in slot.prices}
    reported = len(basket) - len(absent)
    if not absent:
        return Verdict(True, f"all {reported} coins reported", {"coins_reported": reported})
    named = ", ".join(f"{c} ({why})" for c, why in sorted(absent.items()))
    return Verdict(
        False,
        f"{reported} of {len(basket)} coins reported; missing {named}",
        {"coins_reported": reported, "missing": MetadataValue.json(absent)},
    )


def base_matches(
    slot: StoredSlot, daily_open: dict[str, float], sod_utc8: dict[str, float]
) -> Verdict:
    """``daily_open``/``sod_utc8`` hold OKX's figures for the slot's day, by coin."""
    wrong, unverified = {}, []
    for coin, (base, _) in sorted(slot.prices.items()):
        okx = daily_open.get(coin)
        if okx is None:
            unverified.append(coin)
        elif okx != base:
            wrong[coin] = f"stored {base}, OKX 1D open {okx}"
        if coin in sod_utc8 and sod_utc8[coin] != base:
            wrong[coin] = f"stored {base}, OKX sodUtc8 {sod_utc8[coin]}"
    meta = {"checked": len(slot.prices) - len(unverified), "unverified": ", ".join(unverified)}
    if wrong:
        listed = "; ".join(f"{c}: {why}" for c, why in wrong.items())
        return Verdict(False, f"base differs from OKX's daily open: {listed}", meta)
    return Verdict(True, f"{meta['checked']} bases equal OKX's 1D open", meta)


def extreme_moves(slot: StoredSlot, limit_pct: float) -> Verdict:
    moves = {
        coin: (price / slot.previous[coin] - 1) * 100
        for coin, (_, price) in slot.prices.items()
        if coin in slot.previous
    }
    big = {c: m for c, m in moves.items() if abs(m) > limit_pct}
    largest = max(moves, key=lambda c: abs(moves[c]), default=None)
    meta = {"limit_pct": limit_pct}
    if largest is not None:
        meta["largest_move"] = f"{largest} {moves[largest]:+.2f}%"
    if big:
        named = ", ".join(f"{c} {m:+.2f}%" for c, m in sorted(big.items()))
        return Verdict(False, f"30-minute move beyond {limit_pct}%: {named}", meta)
    return Verdict(True, f"no 30-minute move beyond {limit_pct}%", meta)


def _sod_utc8(okx: OKXResource, coins: Sequence[str]) -> dict[str, float]:
    try:
        sod = okx.client.sod_utc8()
    except OKXError:
        return {}
    return {c: sod[swap_inst_id(c)] for c in coins if swap_inst_id(c) in sod}


# Up to this many slots, a run records every slot's result; a longer run only its failing ones.
EVERY_SLOT_UP_TO = 48


def _evaluate(
    context: AssetCheckExecutionContext,
    database: CoinsumDatabase,
    severity: AssetCheckSeverity,
    judge: Callable[[list[StoredSlot]], Iterator[Verdict]],
) -> AssetCheckResult:
    """Judge every slot of the run's range from the stored rows: one slot's result, or a result
    per slot (per failing slot, past ``EVERY_SLOT_UP_TO``) plus a summary of the range.

    Dagster gives a ranged run's check one result for the whole range, with no partition; each
    slot's own result is logged as an evaluation on that partition.
    """
    window = context.partition_time_window
    slots = list(slots_in(window.start, window.end))
    with database.read() as conn:
        stored = load_slots(conn, slots)
    verdicts = list(judge(stored))
    check = context.check_specs[0]
    if len(slots) == 1:
        only = verdicts[0]
        return AssetCheckResult(
            passed=only.passed,
            severity=severity,
            description=only.description,
            metadata=only.metadata,
        )
    every_slot = len(slots) <= EVERY_SLOT_UP_TO
    logged = {
        slot_key(slot): verdict
        for slot, verdict in zip(slots, verdicts, strict=True)
        if every_slot or not verdict.passed
    }
    targets = latest_materializations(context.instance, check.asset_key, list(logged))
    for key, verdict in logged.items():
        context.op_execution_context.log_event(
            AssetCheckEvaluation(
                asset_key=check.asset_key,
                check_name=check.name,
                passed=verdict.passed,
                severity=severity,
                description=verdict.description,
                metadata=verdict.metadata,
                partition=key,
                target_materialization_data=targets.get(key),
            )
        )
    failed = [slot_key(s) for s, v in zip(slots, verdicts, strict=True) if not v.passed]
    which = "each slot has its own result" if every_slot else "each failing slot has its own result"
    return AssetCheckResult(
        passed=not failed,
        severity=severity,
        description=(
            f"range summary: {len(slots) - len(failed)} of {len(slots)} slots pass; {which}"
        ),
        metadata={
            "slots": len(slots),
            "first_slot": slot_key(slots[0]),
            "last_slot": slot_key(slots[-1]),
            "failed_slots": MetadataValue.json(failed[:100]),
        },
    )


@asset_check(
    asset=basket_slots,
    partitions_def=SLOT_PARTITIONS,
    description="Every coin of the basket has a value; warns naming the missing coins and why.",
)
def slot_completeness(
    context: AssetCheckExecutionContext, database: CoinsumDatabase
) -> AssetCheckResult:
    return _evaluate(context, database, WARN, lambda stored: map(completeness, stored))


@asset_check(
    asset=basket_slots,
    partitions_def=SLOT_PARTITIONS,
    blocking=True,
    description=(
        "Each stored base (the 00:00 30m open) equals OKX's own 1D open for that Beijing day, "
        "and the tickers' sodUtc8 on the current day. An error when not."
    ),
)
def base_matches_okx(
    context: AssetCheckExecutionContext,
    database: CoinsumDatabase,
    okx: OKXResource,
) -> AssetCheckResult:
    def judge(stored: list[StoredSlot]) -> Iterator[Verdict]:
        coins = ordered_union(s.basket for s in stored)
        days = sorted({s.slot.date() for s in stored})
        daily = daily_opens(okx.client, coins, days)
        today = clock.now().date()
        sod = _sod_utc8(okx, coins) if today in days else {}
        for s in stored:
            yield base_matches(
                s, daily.get(s.slot.date(), {}), sod if s.slot.date() == today else {}
            )

    return _evaluate(context, database, AssetCheckSeverity.ERROR, judge)


@asset_check(
    asset=basket_slots,
    partitions_def=SLOT_PARTITIONS,
    description=(
        "No coin moved more than COINSUM_MAX_MOVE_PCT (default 10) percent in 30 minutes; a big "
        "move is flagged as a warning naming the coin and its size, never dropped."
    ),
)
def no_extreme_moves(
    context: AssetCheckExecutionContext, database: CoinsumDatabase, limits: CheckLimits
) -> AssetCheckResult:
    limit = limits.max_move_pct
    return _evaluate(
        context, database, WARN, lambda stored: (extreme_moves(s, limit) for s in stored)
    )


_minute = OVERDUE_AFTER.seconds // 60
(freshness_check,) = build_time_partition_freshness_checks(
    assets=[basket_slots],
    deadline_cron=f"{_minute},{_minute + 30} * * * *",
    timezone="Asia/Shanghai",
    severity=WARN,
)
