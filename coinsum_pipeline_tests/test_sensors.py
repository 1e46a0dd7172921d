"""Gap repair, evaluated against a real Dagster instance and the runs it asks for."""

from __future__ import annotations

from datetime import datetime

from dagster import SensorResult, SkipReason, build_sensor_context

from coinsum_pipeline.backfill import run_slots
from coinsum_pipeline.partitions import SLOT, current_slot, epoch_ms, slot_key, slot_of_key
from coinsum_pipeline.sensors import REPAIR_TAG, TRIES_PER_SLOT, TRY_TAG, gap_repair
from coinsum_pipeline_tests.conftest import Pipeline
from coinsum_pipeline_tests.fake_okx import CANDLES


def tick(pipeline: Pipeline, cursor: str | None) -> SensorResult | SkipReason:
    return gap_repair(build_sensor_context(instance=pipeline.instance, cursor=cursor))


def run_requested(pipeline: Pipeline, result: SensorResult) -> None:
    for request in result.run_requests:
        assert run_slots([slot_of_key(request.partition_key)], pipeline.instance).success


def test_requests_exactly_the_gappy_slots_and_stops_once_filled(pipeline: Pipeline) -> None:
    newest = current_slot(datetime.now().astimezone())
    slots = [newest - SLOT * n for n in range(8, 0, -1)]  # the last four hours
    late = [slots[2], slots[5]]
    pipeline.okx.gaps["ETH-USDT-SWAP"] = [(epoch_ms(s), epoch_ms(s)) for s in late]
    assert run_slots(slots, pipeline.instance).success
    pipeline.okx.fail_next("51000", path=CANDLES)  # recent slots are paged from `candles`
    assert not run_slots([slots[6]], pipeline.instance, step_retries=False).success

    first = tick(pipeline, None)
    assert isinstance(first, SensorResult)
    wanted = {slot_key(s) for s in [*late, slots[6]]}
    assert {r.partition_key for r in first.run_requests} == wanted
    by_key = {r.partition_key: r.tags for r in first.run_requests}
    assert by_key[slot_key(late[0])] == {REPAIR_TAG: "ETH no_candle", TRY_TAG: "1/3"}
    assert "fetch_failed" in by_key[slot_key(slots[6])][REPAIR_TAG]

    pipeline.okx.gaps.clear()  # OKX has published the late candles
    run_requested(pipeline, first)
    assert pipeline.query("SELECT count(*) FROM missing_values") == [(0,)]
    assert isinstance(tick(pipeline, first.cursor), SkipReason)


def test_a_slot_that_stays_empty_is_tried_a_bounded_number_of_times(pipeline: Pipeline) -> None:
    slot = current_slot(datetime.now().astimezone()) - 2 * SLOT
    pipeline.okx.gaps["SOL-USDT-SWAP"] = [(epoch_ms(slot), epoch_ms(slot))]
    assert run_slots([slot], pipeline.instance).success
    cursor, tries = None, []
    for _ in range(TRIES_PER_SLOT + 2):
        result = tick(pipeline, cursor)
        if isinstance(result, SkipReason):
            break
        tries += [r.tags[TRY_TAG] for r in result.run_requests]
        run_requested(pipeline, result)
        cursor = result.cursor
    assert tries == ["1/3", "2/3", "3/3"]
    assert "left reported after their tries" in result.skip_message
    assert pipeline.query("SELECT coin, reason FROM missing_values") == [("SOL", "no_candle")]
