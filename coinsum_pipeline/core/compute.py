"""Where every number of docs/numbers.md is computed: base, price, percent change, the basket
sum, and the reason for each missing value.

Pure functions over fetched candles, so the arithmetic can be tested without a server and read
in one place.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime

import pandas as pd

from coinsum_pipeline.core.basket import basket_text, swap_inst_id
from coinsum_pipeline.core.market import CoinFetch
from coinsum_pipeline.core.reasons import MissingReason, no_base_detail
from coinsum_pipeline.core.slots import day_start, epoch_ms

SLOT_COLUMNS = ["slot_start", "trade_date", "slot_time", "slot_ts_ms"]
PRICE_COLUMNS = [*SLOT_COLUMNS, "coin", "inst_id", "base_price", "price", "pct_change"]
MISSING_COLUMNS = [*SLOT_COLUMNS, "coin", "reason", "detail"]
SUM_COLUMNS = [
    *SLOT_COLUMNS,
    "sum_pct",
    "coins_reported",
    "coins_expected",
    "complete",
    "basket",
]


@dataclass(frozen=True)
class SlotTables:
    """The rows a run of slots writes: one table each, all covering exactly the same slots."""

    prices: pd.DataFrame
    missing: pd.DataFrame
    sums: pd.DataFrame


def pct_change(price: float, base: float) -> float:
    """Percent change since the day's 00:00 price ((price - base) / base x 100)."""
    return (price - base) / base * 100


def _slot_fields(slot: datetime) -> list[object]:
    return [slot.replace(tzinfo=None), slot.date(), slot.strftime("%H:%M"), epoch_ms(slot)]


def _missing_reason(slot_ms: int, fetched: CoinFetch) -> tuple[MissingReason, str]:
    if fetched.failure:
        return fetched.failure, fetched.detail
    if fetched.list_time_ms is not None and slot_ms < fetched.list_time_ms:
        return MissingReason.NOT_LISTED, f"listed at ts {fetched.list_time_ms}"
    return MissingReason.NO_CANDLE, "OKX has no 30m candle at this slot"


def compute_slot_tables(
    slots: Sequence[datetime],
    basket_on: Callable[[date], Sequence[str]],
    fetched: Mapping[str, CoinFetch],
) -> SlotTables:
    """Every (slot, coin) of the slot's basket (``basket_on`` its Beijing day) becomes exactly
    one price row or one missing row, and each slot's sum says which coins it is over.

    A coin without a price or base is left out of the sum (never counted as 0 %) and nothing is
    forward-filled: a gap stays a gap, with its reason.
    """
    prices: list[list[object]] = []
    missing: list[list[object]] = []
    sums: list[list[object]] = []
    for slot in slots:
        slot_ms = epoch_ms(slot)
        base_ms = epoch_ms(day_start(slot.date()))
        fields = _slot_fields(slot)
        coins = basket_on(slot.date())
        changes: list[float] = []
        for coin in coins:
            got = fetched[coin]
            candle = got.candles.get(slot_ms)
            base = got.candles.get(base_ms)
            if candle is None:
                missing.append([*fields, coin, *_missing_reason(slot_ms, got)])
            elif base is None:
                why, _ = _missing_reason(base_ms, got)
                missing.append([*fields, coin, MissingReason.NO_BASE, no_base_detail(why)])
            else:
                change = pct_change(candle.open, base.open)
                changes.append(change)
                prices.append([*fields, coin, swap_inst_id(coin), base.open, candle.open, change])
        reported = len(changes)
        total = math.fsum(changes) if changes else None
        complete = reported == len(coins)
        sums.append([*fields, total, reported, len(coins), complete, basket_text(coins)])
    return SlotTables(
        prices=pd.DataFrame(prices, columns=PRICE_COLUMNS),
        missing=pd.DataFrame(missing, columns=MISSING_COLUMNS),
        sums=pd.DataFrame(sums, columns=SUM_COLUMNS),
    )
