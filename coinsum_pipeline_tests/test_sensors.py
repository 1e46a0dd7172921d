"""Gap repair, evaluated against a real Dagster instance and the runs it asks for, at fixed
clocks (the hours where a wall-clock test used to break: just after midnight, 03:18, 23:55)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta

import pytest
from dagster import SensorResult, SkipReason, build_sensor_context

from coinsum_pipeline.backfill import run_slots
from coinsum_pipeline.core.slots import (
    SLOT,
    current_slot,
    day_start,
    epoch_ms,
    slot_key,
    slot_of_key,
    slots_in,
)
from coinsum_pipeline.defs.resources import build_resources
from coinsum_pipeline.defs.sensors import REPAIR_TAG, TRIES_PER_SLOT, TRY_TAG, gap_repair
from coinsum_pipeline.okx.fake import CANDLES
from coinsum_pipeline_tests.helpers import Pipeline, assert_values_exact

pytestmark = pytest.mark.slow

CLOCKS = ["2026-01-10 00:05", "2026-01-10 03:18", "2026-01-09 23:55"]


def last_48_hours(now: datetime) -> list[datetime]:
    """The 96 slots live collection should have stored by ``now``: the newest is the one that
    started at least 5 minutes ago (the live schedule collects a slot one minute in)."""
    newest = current_slot(now - timedelta(minutes=5))
    return [newest - SLOT * n for n in range(95, -1, -1)]


def tick(pipeline: Pipeline, cursor: str | None) -> SensorResult | SkipReason:
    resources = build_resources()  # configured from the environment as it is now
    with build_sensor_context(
        instance=pipeline.instance, cursor=cursor, resources=resources
    ) as context:
        return gap_repair(context)


def requested_slots(result: SensorResult) -> list[list[datetime]]:
    """The slots of each requested run, from its partition key or partition range."""
    runs = []
    for request in result.run_requests:
        keys = request.partition_key_range or (request.partition_key, request.partition_key)
        first, last = slot_of_key(keys[0]), slot_of_key(keys[1])
        runs.append(list(slots_in(first, last + SLOT)))
    return runs


def run_requested(pipeline: Pipeline, result: SensorResult) -> None:
    for slots in requested_slots(result):
        assert run_slots(slots, pipeline.instance).success


def assert_repaired_by(pipeline: Pipeline, result: SensorResult) -> None:
    """Run what the tick asked for: then all 96 slots are stored, complete and exact, and the
    next tick finds nothing to do."""
    run_requested(pipeline, result)
    assert pipeline.query("SELECT count(*), bool_and(complete) FROM coin_sum") == [(96, True)]
    assert pipeline.query("SELECT count(*) FROM missing_values") == [(0,)]
    assert assert_values_exact(pipeline) == 96 * 27
    assert isinstance(tick(pipeline, result.cursor), SkipReason)


@pytest.mark.parametrize("when", CLOCKS)
def test_late_candles_a_late_midnight_and_failed_fetches_are_repaired(
    pipeline: Pipeline, clock_at: Callable[[str], datetime], when: str
) -> None:
    slots = last_48_hours(clock_at(when))
    newest = slots[-1]
    midnight = day_start(newest.date())  # published late: every slot of its day is no_base
    late = [slots[10], midnight]
    pipeline.okx.gaps["ETH-USDT-SWAP"] = [(epoch_ms(s), epoch_ms(s)) for s in late]
    assert run_slots(slots[:-1], pipeline.instance).success
    pipeline.okx.fail_next("51000", path=CANDLES)  # recent slots are paged from `candles`
    assert not run_slots([newest], pipeline.instance, step_retries=False).success
    reasons = {r for (r,) in pipeline.query("SELECT DISTINCT reason FROM missing_values")}
    assert reasons == {"no_candle", "fetch_failed"} | ({"no_base"} if newest > midnight else set())

    first = tick(pipeline, None)
    assert isinstance(first, SensorResult)
    runs = requested_slots(first)
    assert sorted(s for run in runs for s in run) == [slots[10], *slots_in(midnight, newest + SLOT)]
    assert len(runs) == 2, "one run per stretch of consecutive slots"
    tags = {run[0]: request.tags for run, request in zip(runs, first.run_requests, strict=True)}
    assert (tags[slots[10]][REPAIR_TAG], tags[slots[10]][TRY_TAG]) == ("ETH no_candle", "1/3")
    assert "fetch_failed" in tags[midnight][REPAIR_TAG]

    pipeline.okx.gaps.clear()  # OKX has published the late candles
    assert_repaired_by(pipeline, first)


def test_slots_missed_while_the_daemon_was_down_are_requested_in_one_tick(
    pipeline: Pipeline, clock_at: Callable[[str], datetime]
) -> None:
    slots = last_48_hours(clock_at("2026-01-10 03:18"))
    down = slots[-4:]  # two hours: four live ticks that never happened
    assert run_slots(slots[:-4], pipeline.instance).success

    result = tick(pipeline, None)
    assert isinstance(result, SensorResult)
    assert requested_slots(result) == [down]
    assert result.run_requests[0].tags[REPAIR_TAG] == "never written (4 slots)"
    assert result.run_requests[0].tags[TRY_TAG] == "1/3"
    assert_repaired_by(pipeline, result)


def test_a_slot_that_stays_empty_is_tried_a_bounded_number_of_times(
    pipeline: Pipeline, clock_at: Callable[[str], datetime]
) -> None:
    slots = last_48_hours(clock_at("2026-01-10 03:18"))
    slot = slots[-3]
    pipeline.okx.gaps["SOL-USDT-SWAP"] = [(epoch_ms(slot), epoch_ms(slot))]
    assert run_slots(slots, pipeline.instance).success
    cursor, tries = None, []
    for _ in range(TRIES_PER_SLOT + 2):
        result = tick(pipeline, cursor)
        if isinstance(result, SkipReason):
            break
        assert [r.partition_key for r in result.run_requests] == [slot_key(slot)]
        tries += [r.tags[TRY_TAG] for r in result.run_requests]
        run_requested(pipeline, result)
        cursor = result.cursor
    assert tries == ["1/3", "2/3", "3/3"]
    assert "left reported after their tries" in result.skip_message
    assert pipeline.query("SELECT coin, reason FROM missing_values") == [("SOL", "no_candle")]


def test_gap_repair_requests_nothing_while_okx_cannot_be_reached(
    pipeline: Pipeline, clock_at: Callable[[str], datetime], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A new instance with an exchange it cannot reach: no run queues behind it (each would
    hold the okx pool), and the tick says why; once OKX answers, the gaps are requested."""
    clock_at("2026-01-10 03:18")
    monkeypatch.setenv("OKX_BASE_URL", "http://okx.invalid")  # a name that never resolves
    result = tick(pipeline, None)
    assert isinstance(result, SkipReason)
    assert "gap(s) to repair, but not now: cannot reach OKX at http://okx.invalid" in (
        result.skip_message
    )
    assert "does not resolve" in result.skip_message and "HTTPS_PROXY" in result.skip_message
    monkeypatch.setenv("OKX_BASE_URL", pipeline.okx.url)
    assert isinstance(tick(pipeline, None), SensorResult)
