"""The live trigger on a fixed clock: the daemon's scheduler requests a slot at its start, and
the run waits, within its bound, for a coin whose first trade in the slot comes late."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from dagster import DagsterRunStatus, RunsFilter

from coinsum_pipeline.core.slots import epoch_ms
from coinsum_pipeline.instance.daemon import DaemonTurns
from coinsum_pipeline.okx import fetch
from coinsum_pipeline.okx.client import OKXClient
from coinsum_pipeline_tests.helpers import Pipeline, assert_values_exact, beijing

pytestmark = pytest.mark.slow

LATE = "TAO-USDT-SWAP"


def test_the_slot_is_requested_at_its_start_and_a_late_coin_is_waited_for(
    pipeline: Pipeline, daemon: DaemonTurns, clock_at: Callable[[str], datetime]
) -> None:
    pipeline.okx.first_trade_ms = {LATE: 3000}
    live = RunsFilter(tags={"dagster/schedule_name": "live_slots"})
    daemon.instigate(clock_at("2026-01-10 12:29:59"))  # the scheduler's first look
    assert pipeline.instance.get_runs(live) == []

    daemon.instigate(clock_at("2026-01-10 12:30:00.300"))
    (run,) = pipeline.instance.get_runs(live)
    assert run.tags["dagster/partition"] == "2026-01-10-12:30", "the slot that has just started"

    assert pipeline.okx.candle_rows(
        "/api/v5/market/candles", {"instId": LATE, "bar": "30m", "limit": "1"}
    )[0][0] != str(epoch_ms(beijing("2026-01-10 12:30"))), "no trade of the late coin yet"
    for other in pipeline.instance.get_runs():  # gap repair's first look: not this test's
        if other.run_id != run.run_id:
            pipeline.instance.delete_run(other.run_id)
    pipeline.okx.forget_requests()
    daemon.run_queued()
    asked = [q for _, q in pipeline.okx.requests if q.get("instId") == LATE]
    assert len(asked) > 1, "asked again for the late coin's candle"
    assert pipeline.instance.get_run_by_id(run.run_id).status == DagsterRunStatus.SUCCESS
    slot = "slot_start = TIMESTAMP '2026-01-10 12:30'"
    assert pipeline.query(f"SELECT count(*) FROM missing_values WHERE {slot}") == [(0,)]
    whole = pipeline.query(f"SELECT coins_reported, coins_expected FROM coin_sum WHERE {slot}")
    assert whole == [(27, 27)]
    assert assert_values_exact(pipeline), "the late coin's price is its slot's open"


def test_a_coin_later_than_the_bound_is_left_no_candle_for_gap_repair(
    pipeline: Pipeline, clock_at: Callable[[str], datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fetch, "FIRST_TRADE_WAIT", timedelta(seconds=2))
    pipeline.okx.first_trade_ms = {LATE: 60_000}
    slot = clock_at("2026-01-10 12:30:00.300") - timedelta(seconds=0.3)
    client = OKXClient(base_url=pipeline.okx.url)
    fetched = fetch.fetch_basket(client, ["BTC", "TAO"], [slot])
    assert epoch_ms(slot) in fetched["BTC"].candles
    assert epoch_ms(slot) not in fetched["TAO"].candles
    assert fetched["TAO"].failure is None, "TAO answered: its slot is no_candle, not a failure"
    asked = [p for p, q in pipeline.okx.requests if q.get("instId") == LATE]
    assert len(asked) >= 2, "asked again while the slot was young"
