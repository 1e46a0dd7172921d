"""The asset checks, as the Dagster UI shows them: per partition, and each able to fail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from dagster import (
    AssetCheckKey,
    AssetCheckSeverity,
    AssetKey,
    DagsterEventType,
    DefaultSensorStatus,
)
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from coinsum_pipeline.backfill import run_slots
from coinsum_pipeline.core.slots import SLOT, current_slot, epoch_ms, slot_key, slots_in
from coinsum_pipeline.defs.checks import EVERY_SLOT_UP_TO
from coinsum_pipeline.defs.dagster_compat import partition_tags
from coinsum_pipeline_tests.helpers import Pipeline, beijing

pytestmark = pytest.mark.slow

SLOTS = AssetKey("basket_slots")
(PARTITION_TAG,) = partition_tags("x", "x")  # Dagster's tag naming a one-partition run
PER_SLOT = {"slot_completeness", "base_matches_okx", "no_extreme_moves"}
FAILED, PLANNED, SUCCEEDED = (
    AssetCheckExecutionRecordStatus.FAILED,
    AssetCheckExecutionRecordStatus.PLANNED,
    AssetCheckExecutionRecordStatus.SUCCEEDED,
)


def results(pipeline: Pipeline, check: str) -> dict[str | None, tuple[bool, str, object]]:
    """The newest result of ``check`` per partition, (passed, description, severity), read from
    the runs' event logs as the UI reads them. A ranged run's summary has no partition."""
    newest: dict[str | None, tuple[bool, str, object]] = {}
    for record in pipeline.instance.get_run_records():  # newest first
        run = record.dagster_run
        events = pipeline.instance.all_logs(
            run.run_id, of_type=DagsterEventType.ASSET_CHECK_EVALUATION
        )
        for event in reversed(events):  # newest first within the run too
            evaluation = event.dagster_event.event_specific_data
            if evaluation.check_name != check:
                continue
            partition = evaluation.partition or (
                run.tags.get(PARTITION_TAG) if check in PER_SLOT else None
            )
            newest.setdefault(
                partition, (evaluation.passed, evaluation.description, evaluation.severity)
            )
    return newest


def test_completeness_passes_then_names_the_missing_coins(pipeline: Pipeline) -> None:
    slot, gap = beijing("2026-01-05 10:00"), beijing("2026-01-05 10:30")
    pipeline.okx.gaps["ETH-USDT-SWAP"] = [(epoch_ms(gap), epoch_ms(gap))]
    run_slots([slot], pipeline.instance)
    run_slots([gap], pipeline.instance)
    got = results(pipeline, "slot_completeness")
    assert got[slot_key(slot)] == (True, "all 27 coins reported", AssetCheckSeverity.WARN)
    assert got[slot_key(gap)] == (
        False,
        "26 of 27 coins reported; missing ETH (no_candle)",
        AssetCheckSeverity.WARN,
    )


def test_a_ranged_run_records_every_slots_result_pass_or_fail(pipeline: Pipeline) -> None:
    slots = list(slots_in(beijing("2026-01-05 11:00"), beijing("2026-01-05 13:00")))
    gap = slots[1]
    pipeline.okx.gaps["ETH-USDT-SWAP"] = [(epoch_ms(gap), epoch_ms(gap))]
    run_slots(slots, pipeline.instance)
    got = results(pipeline, "slot_completeness")
    assert {key: got[key][0] for key in map(slot_key, slots)} == {
        slot_key(s): s != gap for s in slots
    }
    assert got[None][1] == "range summary: 3 of 4 slots pass; each slot has its own result"
    # Each result names the materialization it judged, or Dagster would count it as stale and
    # the UI would show no status for the slot.
    infos = {
        info.partition_key: info
        for info in pipeline.instance.event_log_storage.get_asset_check_partition_info(
            [AssetCheckKey(SLOTS, "slot_completeness")]
        )
        if info.partition_key
    }
    assert {key: (i.latest_execution_status, i.is_current) for key, i in infos.items()} == {
        slot_key(s): (FAILED if s == gap else SUCCEEDED, True) for s in slots
    }


def test_a_run_longer_than_a_day_records_its_failing_slots_and_sums_up_the_rest(
    pipeline: Pipeline,
) -> None:
    """The backfill trade-off: past EVERY_SLOT_UP_TO slots, passing slots get no result of their
    own (Dagster then calls them skipped by the run), failing slots do, and the run's summary
    counts both."""
    slots = list(slots_in(beijing("2026-01-05 00:00"), beijing("2026-01-06 00:30")))
    assert len(slots) > EVERY_SLOT_UP_TO
    gap = slots[7]
    pipeline.okx.gaps["ETH-USDT-SWAP"] = [(epoch_ms(gap), epoch_ms(gap))]
    run_slots(slots, pipeline.instance)
    got = results(pipeline, "slot_completeness")
    assert set(got) == {slot_key(gap), None}
    assert got[slot_key(gap)][:2] == (False, "26 of 27 coins reported; missing ETH (no_candle)")
    assert got[None][1] == (
        f"range summary: {len(slots) - 1} of {len(slots)} slots pass; each failing slot has its "
        "own result"
    )
    check = AssetCheckKey(SLOTS, "slot_completeness")
    infos = pipeline.instance.event_log_storage.get_asset_check_partition_info([check])
    statuses = {info.partition_key: info.latest_execution_status for info in infos}
    assert [i.is_current for i in infos if i.partition_key == slot_key(gap)] == [True]
    expected = {slot_key(s): FAILED if s == gap else PLANNED for s in slots}
    assert statuses == {**expected, None: FAILED}, (
        "every slot is accounted for: its own failure, or planned by the run that passed it; "
        "the summary has no partition"
    )


def test_base_check_is_an_error_when_okx_daily_open_disagrees(pipeline: Pipeline) -> None:
    slot = beijing("2026-01-05 10:00")
    run_slots([slot], pipeline.instance)
    assert results(pipeline, "base_matches_okx")[slot_key(slot)][0] is True

    pipeline.okx.daily_skew["SOL-USDT-SWAP"] = 1.01
    day = list(slots_in(beijing("2026-01-06 00:00"), beijing("2026-01-06 03:00")))
    outcome = run_slots(day, pipeline.instance)
    assert not outcome.success and "base_matches_okx" in outcome.error, "the check blocks"
    assert pipeline.query("SELECT count(*) FROM coin_sum") == [(7,)], "the data stays visible"
    got = results(pipeline, "base_matches_okx")
    for slot_ in day:  # a ranged run records the failure on every slot it hits
        passed, description, severity = got[slot_key(slot_)]
        assert not passed and severity == AssetCheckSeverity.ERROR
        assert description.startswith("base differs from OKX's daily open: SOL: stored")
    assert got[None][1] == "range summary: 0 of 6 slots pass; each slot has its own result"


def test_base_check_compares_sodutc8_on_the_current_day(
    pipeline: Pipeline, clock_at: Callable[[str], datetime]
) -> None:
    today = current_slot(clock_at("2026-01-10 00:05"))  # the day's first slot
    yesterday = today - SLOT
    run_slots([today], pipeline.instance)
    assert results(pipeline, "base_matches_okx")[slot_key(today)][0] is True
    assert any(path == "/api/v5/market/tickers" for path, _ in pipeline.okx.requests)

    pipeline.okx.sod_skew["SOL-USDT-SWAP"] = 1.01  # the tickers disagree, the 1D candles do not
    assert not run_slots([today], pipeline.instance).success, "the check blocks"
    passed, description, _ = results(pipeline, "base_matches_okx")[slot_key(today)]
    assert not passed and "SOL: stored" in description and "OKX sodUtc8" in description
    run_slots([yesterday], pipeline.instance)  # sodUtc8 is today's open: not for yesterday
    assert results(pipeline, "base_matches_okx")[slot_key(yesterday)][0] is True


@pytest.mark.parametrize(("limit", "passes"), [("50", True), ("0.0001", False)])
def test_extreme_moves_are_flagged_beyond_the_limit(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, limit: str, passes: bool
) -> None:
    monkeypatch.setenv("COINSUM_MAX_MOVE_PCT", limit)
    slots = [beijing("2026-01-05 10:00"), beijing("2026-01-05 10:30")]
    run_slots(slots[:1], pipeline.instance)
    run_slots(slots[1:], pipeline.instance)  # the check compares with the stored 10:00 prices
    passed, description, severity = results(pipeline, "no_extreme_moves")[slot_key(slots[1])]
    assert (passed, severity) == (passes, AssetCheckSeverity.WARN)
    if not passes:
        assert description.startswith("30-minute move beyond 0.0001%: AAVE ")


def test_freshness_fails_while_the_slot_due_by_the_last_deadline_is_missing(
    pipeline: Pipeline, clock_at: Callable[[str], datetime]
) -> None:
    clock_at("2026-01-10 03:18")  # the last deadline was 02:50: the 02:30 slot is due
    run_slots([beijing("2026-01-10 02:00")], pipeline.instance)
    passed, description, severity = results(pipeline, "freshness_check")[None]
    assert (passed, severity) == (False, AssetCheckSeverity.WARN)
    assert "We expected partition 2026-01-10-02:30 to have arrived" in description

    run_slots([beijing("2026-01-10 02:30")], pipeline.instance)
    passed, description, _ = results(pipeline, "freshness_check")[None]
    assert passed, description


def test_freshness_is_evaluated_by_its_own_sensor_as_well() -> None:
    from coinsum_pipeline.definitions import defs

    sensor = defs.resolve_sensor_def("freshness")
    assert sensor.default_status == DefaultSensorStatus.RUNNING
    assert sensor.asset_selection.resolve_checks(defs.resolve_asset_graph()) == {
        AssetCheckKey(SLOTS, "freshness_check")
    }
