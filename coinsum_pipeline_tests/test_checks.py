"""The asset checks, as the Dagster UI shows them: per partition, and each able to fail."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

import pytest
from dagster import AssetCheckKey, AssetCheckSeverity, AssetKey
from dagster._core.storage.asset_check_execution_record import AssetCheckExecutionRecordStatus

from coinsum_pipeline.backfill import run_slots
from coinsum_pipeline.partitions import SLOT, current_slot, epoch_ms, slot_key, slots_in
from coinsum_pipeline_tests.conftest import Pipeline, beijing

SLOTS = AssetKey("basket_slots")
DONE = {AssetCheckExecutionRecordStatus.SUCCEEDED, AssetCheckExecutionRecordStatus.FAILED}


def results(pipeline: Pipeline, check: str) -> dict[str | None, tuple[bool, str, object]]:
    """The newest result of ``check`` per partition: (passed, description, severity)."""
    history = pipeline.instance.event_log_storage.get_asset_check_execution_history(
        AssetCheckKey(SLOTS, check), limit=1000, status=DONE
    )
    newest: dict[str | None, tuple[bool, str, object]] = {}
    for record in history:  # newest first
        evaluation = record.event.dagster_event.event_specific_data
        newest.setdefault(
            record.partition,
            (evaluation.passed, evaluation.description, evaluation.severity),
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


def test_freshness_fails_when_the_newest_slot_is_old(
    pipeline: Pipeline, clock_at: Callable[[str], datetime]
) -> None:
    now = clock_at("2026-01-10 03:18")
    run_slots([beijing("2026-01-05 10:00")], pipeline.instance)
    passed, description, _ = results(pipeline, "newest_slot_fresh")[None]
    assert not passed  # 4 days 17 h 18 min, and the seconds the test has taken since
    assert description.startswith("newest slot 2026-01-05-10:00 is 679"), description

    run_slots([current_slot(now)], pipeline.instance)
    passed, description, _ = results(pipeline, "newest_slot_fresh")[None]
    assert passed, description


def test_freshness_has_its_own_schedule_and_is_quiet_when_live_collection_is_off(
    pipeline: Pipeline,
) -> None:
    from dagster._core.definitions.run_request import InstigatorType
    from dagster._core.remote_origin import (
        InProcessCodeLocationOrigin,
        RemoteInstigatorOrigin,
        RemoteRepositoryOrigin,
    )
    from dagster._core.scheduler.instigation import (
        InstigatorState,
        InstigatorStatus,
        ScheduleInstigatorData,
    )
    from dagster._core.types.loadable_target_origin import LoadableTargetOrigin

    from coinsum_pipeline.definitions import defs
    from coinsum_pipeline.schedules import live_slots

    job = defs.resolve_job_def("check_freshness")
    assert [s.job_name for s in defs.schedules if s.name == "freshness"] == ["check_freshness"]
    run_slots([beijing("2026-01-05 10:00")], pipeline.instance)
    assert job.execute_in_process(instance=pipeline.instance).success  # a warning, not a failure
    assert results(pipeline, "newest_slot_fresh")[None][0] is False

    location = InProcessCodeLocationOrigin(
        LoadableTargetOrigin(module_name="coinsum_pipeline.definitions"), location_name="coinsum"
    )
    origin = RemoteInstigatorOrigin(
        RemoteRepositoryOrigin(location, "__repository__"), "live_slots"
    )
    pipeline.instance.add_instigator_state(  # what turning the live schedule off in the UI stores
        InstigatorState(
            origin,
            InstigatorType.SCHEDULE,
            InstigatorStatus.STOPPED,
            ScheduleInstigatorData(live_slots.cron_schedule),
        )
    )
    assert job.execute_in_process(instance=pipeline.instance).success
    assert results(pipeline, "newest_slot_fresh")[None][1] == "live collection is off: not checked"
