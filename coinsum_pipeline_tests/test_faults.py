"""Faults survived: whatever OKX and the network do, every value OKX has ends up exact and
every other one is in missing_values with the right reason."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from datetime import date, timedelta
from pathlib import Path

import pytest
from dagster import (
    AssetKey,
    DagsterEventType,
    DagsterRunStatus,
    JobDefinition,
    ReexecutionOptions,
    execute_job,
    reconstructable,
)

from coinsum_pipeline.backfill import run_slots
from coinsum_pipeline.cli import main
from coinsum_pipeline.core.basket import DEFAULT_COINS
from coinsum_pipeline.core.slots import SLOT_MS, day_start, epoch_ms, slot_key, slots_in
from coinsum_pipeline.definitions import build_defs
from coinsum_pipeline.defs.dagster_compat import partition_tags
from coinsum_pipeline.instance.runs import close_orphaned_daemon_runs
from coinsum_pipeline.okx.fake import HISTORY_CANDLES
from coinsum_pipeline_tests.helpers import Pipeline, assert_values_exact, beijing, table_snapshot

pytestmark = pytest.mark.slow

FIRST, LAST = date(2026, 1, 5), date(2026, 1, 10)
STEP_FAILURE, RUN_FAILURE = DagsterEventType.STEP_FAILURE, DagsterEventType.RUN_FAILURE


def collect_slots_job() -> JobDefinition:
    """The job as Dagster's own processes load it (what "Re-execute" in the UI runs), its
    resources configured from the environment as it is now: runs execute in this process, and
    the module's ``defs`` was built when the tests were collected, before the fake OKX's URL was
    set."""
    from coinsum_pipeline.definitions import build_defs

    return build_defs().resolve_job_def("collect_slots")


OUTAGE = (beijing("2026-01-07 22:00"), beijing("2026-01-08 02:00"))  # ETH, across midnight
LISTED = beijing("2026-01-06 13:10")  # NEW's listTime


def expected_missing() -> set[tuple[int, str, str]]:
    """The missing-value reasons, worked out from the scenario, not read from the pipeline."""
    gap = range(epoch_ms(OUTAGE[0]), epoch_ms(OUTAGE[1]) + 1)
    first_candle = epoch_ms(LISTED) // SLOT_MS * SLOT_MS
    missing = set()
    for slot in slots_in(day_start(FIRST), day_start(LAST + timedelta(days=1))):
        ts, midnight = epoch_ms(slot), epoch_ms(day_start(slot.date()))
        missing.add((ts, "NOPE", "unknown_instrument"))
        if ts in gap:
            missing.add((ts, "ETH", "no_candle"))
        elif midnight in gap:
            missing.add((ts, "ETH", "no_base"))
        if ts < first_candle:
            missing.add((ts, "NEW", "not_listed"))
        elif midnight < first_candle:
            missing.add((ts, "NEW", "no_base"))
    return missing


def test_six_days_through_random_faults_outage_listing_and_unknown_symbol(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    okx = pipeline.okx
    okx.fault_rate = 0.08
    monkeypatch.setenv("OKX_TIMEOUT_SECONDS", "2")
    okx.slow_seconds = 2.5  # longer than the client's timeout
    okx.gaps["ETH-USDT-SWAP"] = [(epoch_ms(OUTAGE[0]), epoch_ms(OUTAGE[1]))]
    okx.instruments["NEW-USDT-SWAP"] = epoch_ms(LISTED)
    monkeypatch.setenv("COINSUM_COINS", ",".join([*DEFAULT_COINS, "NEW", "NOPE"]))
    args = ["backfill", "--from", str(FIRST), "--to", str(LAST)]

    assert main(args) == 0
    assert okx.faults_served, "the scenario must actually have thrown faults"
    stored = pipeline.query("SELECT slot_ts_ms, coin, reason FROM missing_values")
    assert set(stored) == expected_missing() and len(stored) == len(expected_missing())
    values = assert_values_exact(pipeline)
    assert values + len(stored) == 6 * 48 * 29, "every (slot, coin) is a value or a reason"

    before = table_snapshot(pipeline)
    assert main(args) == 0
    assert table_snapshot(pipeline) == before


def test_backfill_killed_halfway_then_run_again_loses_and_duplicates_nothing(
    pipeline: Pipeline,
) -> None:
    coinsum = Path(sys.executable).parent / "coinsum"
    proc = subprocess.Popen(
        [coinsum, "backfill", "--from", "2026-01-03", "--to", "2026-01-09"],
        env=os.environ.copy(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        start_new_session=True,  # so the kill takes its helpers (Dagster's log tailers) too
    )
    for line in proc.stdout:
        if " ok " in line:  # the first run has finished; the second starts now
            break
    # Kill the second run while it holds the `okx` pool slot: the worst moment, since a slot left
    # claimed would queue every later run behind a dead one.
    deadline = time.monotonic() + 60
    while not pipeline.instance.event_log_storage.get_concurrency_info("okx").claimed_slots:
        assert time.monotonic() < deadline, "the second run never claimed its pool slot"
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert pipeline.query("SELECT count(DISTINCT slot_start) FROM coin_sum")[0][0] < 336

    assert main(["backfill", "--from", "2026-01-03", "--to", "2026-01-09"]) == 0
    assert assert_values_exact(pipeline) == 336 * 27
    assert pipeline.query("SELECT count(*), count(DISTINCT slot_start) FROM coin_sum") == [
        (336, 336)
    ]
    assert not pipeline.instance.event_log_storage.get_concurrency_info("okx").claimed_slots
    statuses = [r.dagster_run.status for r in pipeline.instance.get_run_records()]
    assert statuses.count(DagsterRunStatus.FAILURE) == 1, "the killed run is recorded as failed"
    assert statuses.count(DagsterRunStatus.SUCCESS) == len(statuses) - 1


def test_failed_backfill_run_reexecuted_from_failure_fills_exactly_what_was_missing(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the UI's "Re-execute from failure" does: a new run of the failed steps, with the
    parent run's tags (so its partition range), through Dagster's own executor."""
    monkeypatch.setenv("COINSUM_COINS", "BTC,ETH,SOL")
    day = list(slots_in(beijing("2026-01-05 00:00"), beijing("2026-01-06 00:00")))
    pipeline.okx.fail_next("51000", path=HISTORY_CANDLES)  # BTC (fetched first) fails outright
    failed = run_slots(day, pipeline.instance, step_retries=False)
    assert not failed.success and "fetch_failed" in failed.error
    reasons = pipeline.query("SELECT coin, reason, count(*) FROM missing_values GROUP BY ALL")
    assert len(reasons) == 1 and reasons[0][1:] == ("fetch_failed", 48)

    parent = pipeline.instance.get_run_by_id(failed.run_id)
    with execute_job(
        reconstructable(collect_slots_job),
        pipeline.instance,
        tags=parent.tags,
        reexecution_options=ReexecutionOptions.from_failure(failed.run_id, pipeline.instance),
    ) as result:
        assert result.success and result.dagster_run.parent_run_id == failed.run_id
        range_tags = partition_tags("2026-01-05-00:00", "2026-01-05-23:30")
        assert range_tags.items() <= result.dagster_run.tags.items()
    assert pipeline.query("SELECT count(*) FROM missing_values") == [(0,)]
    assert assert_values_exact(pipeline) == 48 * 3
    assert pipeline.instance.get_materialized_partitions(AssetKey("basket_slots")) == {
        slot_key(s) for s in day
    }


def test_an_okx_it_cannot_reach_fails_the_run_at_once_with_the_cause_as_its_message(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A blocked or mistyped host: no step retries, no minutes of waiting; the run's failure (what
    the UI shows on the run page) is the one line that says which host, why and what to change."""
    monkeypatch.setenv("OKX_BASE_URL", "http://okx.invalid")
    day = list(slots_in(beijing("2026-01-05 00:00"), beijing("2026-01-06 00:00")))
    outcome = run_slots(day, pipeline.instance)
    expected = "cannot reach OKX at http://okx.invalid: the name okx.invalid does not resolve."
    assert not outcome.success and outcome.error.startswith(expected)
    events = [e.dagster_event for e in pipeline.instance.all_logs(outcome.run_id)]
    kinds = [e.event_type for e in events if e is not None]
    assert DagsterEventType.STEP_UP_FOR_RETRY not in kinds and kinds.count(STEP_FAILURE) == 1
    (run_failure,) = [e for e in events if e is not None and e.event_type == RUN_FAILURE]
    assert expected in run_failure.job_failure_data.error.message
    assert pipeline.okx.request_count() == 0


def test_runs_a_killed_daemon_left_starting_or_started_are_closed_before_it_starts(
    pipeline: Pipeline,
) -> None:
    """What the daemon's service does before the daemon starts: a run the last daemon was
    launching (starting) or running (started) when it was killed has no worker any more."""
    instance = pipeline.instance
    job = build_defs().resolve_job_def("tidy")
    statuses = [DagsterRunStatus.STARTING, DagsterRunStatus.STARTED, DagsterRunStatus.NOT_STARTED]
    runs = [instance.create_run_for_job(job, status=status) for status in statuses]
    closed = close_orphaned_daemon_runs(instance)
    assert sorted(closed) == sorted(run.run_id for run in runs[:2])
    after = [instance.get_run_by_id(run.run_id).status for run in runs]
    assert after == [
        DagsterRunStatus.FAILURE,
        DagsterRunStatus.FAILURE,
        DagsterRunStatus.NOT_STARTED,
    ]
