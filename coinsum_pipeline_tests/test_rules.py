"""The rules the checks and gap repair judge by, as plain functions: fast, exact, each able to
fail, so the end-to-end tests need only show they are wired in."""

from __future__ import annotations

import pytest

from coinsum_pipeline.core.basket import BasketError, parse_basket
from coinsum_pipeline.core.slots import SLOT, slot_key
from coinsum_pipeline.defs.checks import StoredSlot, base_matches, completeness, extreme_moves
from coinsum_pipeline.defs.sensors import (
    NEVER_WRITTEN,
    REPAIR_TAG,
    RUNS_PER_TICK,
    TRIES_PER_SLOT,
    TRY_TAG,
    plan_repairs,
)
from coinsum_pipeline_tests.helpers import beijing

T = beijing("2026-01-05 10:00")


def stored(**fields: object) -> StoredSlot:
    return StoredSlot(slot=T, **fields)


def test_completeness_names_each_missing_coin_with_its_reason() -> None:
    full = stored(prices={"BTC": (1.0, 2.0), "ETH": (1.0, 1.0)}, basket=("BTC", "ETH"))
    assert completeness(full).passed and completeness(full).description == "all 2 coins reported"
    gappy = stored(
        prices={"BTC": (1.0, 2.0)}, missing={"ETH": "no_candle"}, basket=("BTC", "ETH", "SOL")
    )
    verdict = completeness(gappy)
    assert not verdict.passed
    assert verdict.description == (
        "1 of 3 coins reported; missing ETH (no_candle), SOL (not stored)"
    )
    assert not completeness(stored()).passed, "a slot that is not stored is not complete"


def test_base_must_equal_okx_daily_open_and_sod_utc8() -> None:
    slot = stored(prices={"BTC": (100.0, 101.0), "ETH": (10.0, 9.0)})
    assert base_matches(slot, {"BTC": 100.0, "ETH": 10.0}, {}).passed
    wrong = base_matches(slot, {"BTC": 100.5, "ETH": 10.0}, {})
    assert not wrong.passed and wrong.description.endswith("BTC: stored 100.0, OKX 1D open 100.5")
    sod = base_matches(slot, {"BTC": 100.0, "ETH": 10.0}, {"ETH": 10.1})
    assert not sod.passed and "ETH: stored 10.0, OKX sodUtc8 10.1" in sod.description
    unverified = base_matches(slot, {"BTC": 100.0}, {})
    assert unverified.passed and unverified.metadata == {"checked": 1, "unverified": "ETH"}


def test_extreme_moves_are_measured_against_the_previous_slot() -> None:
    slot = stored(
        prices={"BTC": (100.0, 112.0), "ETH": (10.0, 10.5)},
        previous={"BTC": 100.0, "ETH": 10.0},
    )
    assert extreme_moves(slot, 15.0).passed
    flagged = extreme_moves(slot, 10.0)
    assert not flagged.passed
    assert flagged.description == "30-minute move beyond 10.0%: BTC +12.00%"
    assert flagged.metadata["largest_move"] == "BTC +12.00%"
    assert extreme_moves(stored(prices={"BTC": (1.0, 9.0)}), 1.0).passed, "no previous price"


def test_repairs_run_stretches_of_consecutive_slots_newest_first() -> None:
    due = [T + SLOT * n for n in range(10)]  # 10:00 .. 14:30
    naive = [s.replace(tzinfo=None) for s in due]
    stored_slots = set(naive) - {naive[2], naive[3], naive[8]}  # 11:00, 11:30, 14:00 unwritten
    gaps = {naive[5]: "ETH no_candle", naive[6]: "SOL no_base"}
    requests, tries, given_up = plan_repairs(due, stored_slots, gaps, {})
    ranges = [(r.partition_key_range or (r.partition_key, r.partition_key)) for r in requests]
    assert [tuple(k) for k in ranges] == [
        (slot_key(due[8]), slot_key(due[8])),
        (slot_key(due[5]), slot_key(due[6])),
        (slot_key(due[2]), slot_key(due[3])),
    ]
    assert [r.tags[REPAIR_TAG] for r in requests] == [
        NEVER_WRITTEN,
        "ETH no_candle (1 slot); SOL no_base (1 slot)",
        f"{NEVER_WRITTEN} (2 slots)",
    ]
    assert {r.tags[TRY_TAG] for r in requests} == {f"1/{TRIES_PER_SLOT}"}
    assert tries == {slot_key(due[n]): 1 for n in (2, 3, 5, 6, 8)} and given_up == []


def test_repairs_are_bounded_per_tick_and_per_slot() -> None:
    due = [T + SLOT * n for n in range(0, 20, 2)]  # ten slots, none adjacent, none stored
    requests, _, _ = plan_repairs(due, set(), {}, {})
    assert len(requests) == RUNS_PER_TICK
    assert [r.partition_key for r in requests] == [slot_key(s) for s in due[::-1][:RUNS_PER_TICK]]

    spent = {slot_key(s): TRIES_PER_SLOT for s in due}
    requests, _, given_up = plan_repairs(due, set(), {}, spent)
    assert requests == [] and sorted(given_up) == sorted(spent)


@pytest.mark.parametrize(
    ("text", "coins"),
    [
        (None, 27),
        ("", 27),
        ("btc, ETH-USDT-SWAP ,sol,BTC", ("BTC", "ETH", "SOL")),
        ("1000PEPE", ("1000PEPE",)),
    ],
)
def test_basket_text_is_read_into_base_symbols(text: str | None, coins: object) -> None:
    parsed = parse_basket(text)
    assert len(parsed) == coins if isinstance(coins, int) else parsed == coins


@pytest.mark.parametrize(("text", "says"), [("BTC,ET H", "malformed"), (" , ", "names no coins")])
def test_a_basket_that_cannot_be_tracked_is_refused(text: str, says: str) -> None:
    with pytest.raises(BasketError, match=says):
        parse_basket(text)
