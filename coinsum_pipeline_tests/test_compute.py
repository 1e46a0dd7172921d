"""The arithmetic of docs/numbers.md and missing-value reasons, on hand-made candles."""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import date, timedelta

import pytest

from coinsum_pipeline.core.compute import compute_slot_tables, pct_change
from coinsum_pipeline.core.market import Candle, CoinFetch
from coinsum_pipeline.core.slots import SLOT, epoch_ms
from coinsum_pipeline_tests.helpers import beijing

MIDNIGHT = beijing("2026-01-05 00:00")


def candles(*pairs: tuple[str, float]) -> dict[int, Candle]:
    out = {}
    for when, price in pairs:
        ts = epoch_ms(beijing(f"2026-01-05 {when}"))
        out[ts] = Candle(ts, price, True)
    return out


def basket(*coins: str) -> Callable[[date], tuple[str, ...]]:
    """The same basket on every day."""
    return lambda _day: coins


def test_pct_change_is_percent_since_the_base() -> None:
    assert pct_change(110.0, 100.0) == 10.0
    assert pct_change(90000.0, 100000.0) == -10.0
    assert pct_change(0.5, 0.4) == pytest.approx(25.0, abs=1e-12)
    assert pct_change(3.0, 3.0) == 0.0


def test_midnight_slot_is_its_own_base() -> None:
    fetched = {"BTC": CoinFetch(candles(("00:00", 90000.0)))}
    tables = compute_slot_tables([MIDNIGHT], basket("BTC"), fetched)
    row = tables.prices.iloc[0]
    assert (row.base_price, row.price, row["pct_change"]) == (90000.0, 90000.0, 0.0)
    assert tables.sums.iloc[0].sum_pct == 0.0 and bool(tables.sums.iloc[0].complete)


def test_sum_skips_missing_coins_and_never_counts_them_as_zero() -> None:
    slot = MIDNIGHT + 4 * SLOT  # 02:00
    fetched = {
        "BTC": CoinFetch(candles(("00:00", 100.0), ("02:00", 103.0))),
        "ETH": CoinFetch(candles(("00:00", 10.0), ("02:00", 9.5))),
        "SOL": CoinFetch(candles(("00:00", 1.0))),  # no candle at 02:00
        "XRP": CoinFetch(candles(("02:00", 2.0))),  # no 00:00 candle
        "NEW": CoinFetch(list_time_ms=epoch_ms(slot + SLOT)),
        "BAD": CoinFetch(failure="unknown_instrument", detail="not a live OKX swap"),
        "DOWN": CoinFetch(failure="fetch_failed", detail="HTTP 503"),
    }
    tables = compute_slot_tables([slot], basket(*fetched), fetched)
    assert list(tables.prices.coin) == ["BTC", "ETH"]
    total = tables.sums.iloc[0]
    assert total.sum_pct == math.fsum([pct_change(103.0, 100.0), pct_change(9.5, 10.0)])
    assert (total.coins_reported, total.coins_expected, bool(total.complete)) == (2, 7, False)
    reasons = dict(zip(tables.missing.coin, tables.missing.reason, strict=True))
    assert reasons == {
        "SOL": "no_candle",
        "XRP": "no_base",
        "NEW": "not_listed",
        "BAD": "unknown_instrument",
        "DOWN": "fetch_failed",
    }


def test_coin_listed_mid_day_has_no_base_that_day() -> None:
    listed = MIDNIGHT + timedelta(hours=9)
    fetched = {"NEW": CoinFetch(candles(("09:00", 5.0), ("10:00", 6.0)), epoch_ms(listed))}
    slots = [MIDNIGHT + 16 * SLOT, MIDNIGHT + 20 * SLOT]  # 08:00 and 10:00
    tables = compute_slot_tables(slots, basket("NEW"), fetched)
    assert tables.prices.empty
    assert list(tables.missing.reason) == ["not_listed", "no_base"]
    assert tables.missing.detail.iloc[1] == "00:00 price missing: not_listed"
    assert tables.sums.sum_pct.isna().all() and (tables.sums.coins_reported == 0).all()


def test_slot_columns_carry_beijing_time_and_utc_epoch() -> None:
    slot = beijing("2026-01-05 08:30")
    fetched = {"BTC": CoinFetch(candles(("00:00", 1.0), ("08:30", 2.0)))}
    row = compute_slot_tables([slot], basket("BTC"), fetched).prices.iloc[0]
    assert str(row.slot_start) == "2026-01-05 08:30:00"
    assert str(row.trade_date) == "2026-01-05" and row.slot_time == "08:30"
    assert row.slot_ts_ms == 1767573000000  # 2026-01-05 00:30 UTC
