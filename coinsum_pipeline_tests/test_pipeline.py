"""The whole pipeline: fake OKX -> Dagster runs in a real instance -> a real DuckDB file."""

from __future__ import annotations

import signal
import subprocess
import sys
from datetime import date
from pathlib import Path

import pytest
from dagster import AssetKey

from coinsum_pipeline.backfill import backfill, export_range, run_slots
from coinsum_pipeline.cli import main
from coinsum_pipeline.core.slots import SLOT, day_start, epoch_ms, slots_in
from coinsum_pipeline.definitions import defs
from coinsum_pipeline.defs.dagster_compat import partition_tags
from coinsum_pipeline.okx.ahead import READ_AHEAD
from coinsum_pipeline.okx.fake import HISTORY_CANDLES
from coinsum_pipeline_tests.helpers import (
    PNG,
    Pipeline,
    assert_values_exact,
    beijing,
    midnight_ms,
    read_csv,
    real_rows,
    table_snapshot,
)

SLOTS = AssetKey("basket_slots")
RANGE_START, _ = partition_tags("first", "last")
NOW = beijing("2026-11-25 10:00")  # any moment after the ranges these tests fetch


@pytest.mark.slow
def test_first_users_range_fills_every_slot_exactly(pipeline: Pipeline) -> None:
    outcomes = list(backfill(date(2026, 1, 3), date(2026, 1, 16), NOW, pipeline.instance))
    assert [(o.first_key, o.last_key, o.success) for o in outcomes] == [
        ("2026-01-03-00:00", "2026-01-08-23:30", True),
        ("2026-01-09-00:00", "2026-01-14-23:30", True),
        ("2026-01-15-00:00", "2026-01-16-23:30", True),
    ]
    assert assert_values_exact(pipeline) == 18_144
    assert pipeline.query("SELECT count(*), bool_and(complete) FROM coin_sum") == [(672, True)]
    assert pipeline.query("SELECT count(*) FROM missing_values") == [(0,)]
    assert len(pipeline.instance.get_materialized_partitions(SLOTS)) == 672
    # One candle page of 300 per coin per run of 288 slots. On a loaded machine a request can
    # reach the server late enough to meet its rate limit; it is retried, and counted here.
    pages = pipeline.okx.request_count(HISTORY_CANDLES)
    assert 27 * 3 <= pages <= 27 * 3 + pipeline.okx.rate_limited
    # Each run's candles were read ahead while the run before wrote its events: asked for before
    # the run started, and not asked for again (the counts above). Nothing is left over.
    starts = {
        r.dagster_run.tags[RANGE_START]: r.start_time for r in pipeline.instance.get_run_records()
    }
    for outcome in outcomes[1:]:
        last_ms = epoch_ms(beijing(f"{outcome.last_key[:10]} {outcome.last_key[11:]}"))
        asked = [
            at
            for (path, params), at in zip(pipeline.okx.requests, pipeline.okx.arrivals, strict=True)
            if path == HISTORY_CANDLES and params["after"] == str(last_ms + 1)
        ]
        assert len(asked) >= 27 and max(asked) < starts[outcome.first_key]
    assert READ_AHEAD.pending() == 0

    assert export_range(date(2026, 1, 3), date(2026, 1, 16), pipeline.instance).success
    days = sorted(p for p in pipeline.exports.iterdir() if p.name != "ranges")
    assert [p.name for p in days] == [f"2026-01-{d:02d}" for d in range(3, 17)]
    rows = {
        kind: sum(len(read_csv(day / f"{kind}_{day.name}.csv")) for day in days)
        for kind in ("full", "sum", "missing", "day_table")
    }
    assert rows == {"full": 18_144, "sum": 672, "missing": 0, "day_table": 672}
    whole = pipeline.exports / "ranges"
    assert len(read_csv(whole / "full_2026-01-03_2026-01-16.csv")) == 18_144
    assert len(read_csv(whole / "sum_2026-01-03_2026-01-16.csv")) == 672
    assert len(read_csv(whole / "day_table_2026-01-03_2026-01-16.csv")) == 672
    assert (whole / "curve_2026-01-03_2026-01-16.png").read_bytes().startswith(PNG)


@pytest.mark.slow
def test_rerunning_replaces_exactly_and_changes_nothing(pipeline: Pipeline) -> None:
    list(backfill(date(2026, 1, 5), date(2026, 1, 6), NOW, pipeline.instance))
    before = table_snapshot(pipeline)
    list(backfill(date(2026, 1, 6), date(2026, 1, 6), NOW, pipeline.instance))
    run_slots(
        list(slots_in(beijing("2026-01-05 13:00"), beijing("2026-01-05 16:00"))), pipeline.instance
    )
    assert table_snapshot(pipeline) == before
    assert len(before["prices"]) == 2 * 48 * 27 and len(before["sums"]) == 96


@pytest.mark.slow
def test_mid_day_range_gets_its_days_base_without_other_partitions(pipeline: Pipeline) -> None:
    slots = list(slots_in(beijing("2026-01-05 13:00"), beijing("2026-01-06 02:00")))
    assert run_slots(slots, pipeline.instance, step_retries=False).success
    stored = pipeline.query("SELECT DISTINCT slot_start FROM coin_prices ORDER BY 1")
    assert [s for (s,) in stored] == [s.replace(tzinfo=None) for s in slots]
    assert assert_values_exact(pipeline) == len(slots) * 27
    bases = pipeline.query("SELECT DISTINCT trade_date, coin, base_price FROM coin_prices")
    assert len(bases) == 2 * 27, "one base per coin per day, whichever slot it was read for"


@pytest.mark.slow
def test_midnight_slot_alone_is_zero_percent(pipeline: Pipeline) -> None:
    assert run_slots([beijing("2026-01-05 00:00")], pipeline.instance).success
    rows = pipeline.query("SELECT count(*), max(abs(pct_change)) FROM coin_prices")
    assert rows == [(27, 0.0)]
    assert pipeline.query("SELECT sum_pct, coins_reported FROM coin_sum") == [(0.0, 27)]


@pytest.mark.slow
def test_live_slot_just_after_midnight_uses_the_open_candle(pipeline: Pipeline) -> None:
    from dagster import build_schedule_context

    pipeline.okx.now_ms = epoch_ms(beijing("2026-01-10 00:30:02"))
    context = build_schedule_context(scheduled_execution_time=beijing("2026-01-10 00:30"))
    (request,) = defs.resolve_schedule_def("live_slots").evaluate_tick(context).run_requests
    assert request.partition_key == "2026-01-10-00:30"
    assert run_slots([beijing("2026-01-10 00:30")], pipeline.instance).success
    assert assert_values_exact(pipeline) == 27
    served = pipeline.okx.candle_rows(HISTORY_CANDLES, {"instId": "BTC-USDT-SWAP", "bar": "30m"})
    assert served[0][0] == str(epoch_ms(beijing("2026-01-10 00:30"))) and served[0][-1] == "0"


def test_real_okx_candles_replayed_through_the_pipeline(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    inst_ids = pipeline.okx.replay_real()
    assert len(inst_ids) == 5
    coins = [i.removesuffix("-USDT-SWAP") for i in inst_ids]
    monkeypatch.setenv("COINSUM_COINS", ",".join(coins))
    list(backfill(date(2026, 8, 1), date(2026, 8, 3), NOW, pipeline.instance))
    rows = pipeline.query(
        "SELECT slot_ts_ms, trade_date, inst_id, base_price, price, pct_change FROM coin_prices"
    )
    assert len(rows) == 3 * 48 * 5
    for inst_id in inst_ids:
        thirty, daily = real_rows(inst_id, "30m"), real_rows(inst_id, "1D")
        for ts, day, inst, base, price, pct in rows:
            if inst != inst_id:
                continue
            assert price == float(thirty[ts][1])
            assert base == float(thirty[midnight_ms(day)][1]) == float(daily[midnight_ms(day)][1])
            assert pct == (price - base) / base * 100
    assert pipeline.query("SELECT count(*) FROM missing_values") == [(0,)]


@pytest.mark.slow
def test_gaps_are_stored_with_reasons_and_the_cli_reports_failure(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    okx = pipeline.okx
    monkeypatch.setenv("COINSUM_COINS", "BTC,ETH,SOL,NEW,NOPE")
    okx.instruments["NEW-USDT-SWAP"] = epoch_ms(beijing("2026-01-05 09:10"))
    okx.gaps["ETH-USDT-SWAP"] = [
        (epoch_ms(beijing("2026-01-05 04:00")), epoch_ms(beijing("2026-01-05 05:00")))
    ]
    okx.fail_next("51000", path=HISTORY_CANDLES)  # one coin's fetch fails outright
    code = main(["backfill", "--from", "2026-01-05", "--to", "2026-01-05", "--fail-fast"])
    assert code == 1
    printed = capsys.readouterr()
    assert "fetch_failed" in printed.err
    assert "note: OKX lists no swap for NOPE" in printed.out
    failed = pipeline.query(
        "SELECT coin, count(*) FROM missing_values WHERE reason = 'fetch_failed' GROUP BY 1"
    )
    assert len(failed) == 1 and failed[0][1] == 48, "the failed coin's slots are stored as such"

    assert main(["backfill", "--from", "2026-01-05", "--to", "2026-01-05"]) == 0
    missing = dict(pipeline.query("SELECT reason, count(*) FROM missing_values GROUP BY 1"))
    assert missing == {
        "unknown_instrument": 48,  # NOPE
        "no_candle": 3,  # ETH 04:00, 04:30, 05:00
        "not_listed": 18,  # NEW before 09:00 (the 09:00 candle holds its first trade)
        "no_base": 48 - 18,  # NEW has no 00:00 price on its listing day
    }
    assert assert_values_exact(pipeline) == 48 * 3 - 3
    sums = pipeline.query("SELECT min(coins_reported), max(coins_reported) FROM coin_sum")
    assert sums == [(2, 3)]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--from", "2026-01-16", "--to", "2026-01-03"], "before --from"),
        (["--from", "2025-12-01", "--to", "2026-01-03"], "before the first partition day"),
        (["--from", "2026-13-01", "--to", "2026-01-03"], "not a date"),
        (["--from", "2099-01-01", "--to", "2099-01-02"], "in the future"),
    ],
)
def test_bad_dates_get_a_clear_error(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    try:
        code = main(["backfill", *args])
    except SystemExit as exited:  # argparse rejects a malformed date itself
        code = exited.code
    assert code == 2
    assert message in capsys.readouterr().err
    assert pipeline.okx.request_count() == 0


def test_malformed_basket_is_refused_before_any_request(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COINSUM_COINS", "BTC,ET H,SOL")
    assert main(["backfill", "--from", "2026-01-05", "--to", "2026-01-05"]) == 2
    assert "COINSUM_COINS has malformed coin symbols ['ET H']" in capsys.readouterr().err
    assert pipeline.okx.request_count() == 0


def test_unreachable_or_malformed_okx_url_is_one_clear_error(
    tmp_path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("COINSUM_DB", str(tmp_path / "c.duckdb"))
    args = ["backfill", "--from", "2026-01-05", "--to", "2026-01-05"]
    assert main(args) == 2  # OKX_BASE_URL is a closed port in tests
    assert "cannot reach OKX at http://127.0.0.1:9" in capsys.readouterr().err
    monkeypatch.setenv("OKX_BASE_URL", "www.okx.com")
    assert main(args) == 2
    assert "OKX_BASE_URL 'www.okx.com' is not an http(s) URL" in capsys.readouterr().err
    assert not (tmp_path / "c.duckdb").exists(), "nothing was run"


def test_unwritable_database_path_is_refused_before_any_run(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COINSUM_DB", "/proc/coinsum/coinsum.duckdb")
    assert main(["backfill", "--from", "2026-01-05", "--to", "2026-01-05"]) == 2
    assert "set COINSUM_DB to a path in a writable folder" in capsys.readouterr().err
    assert pipeline.okx.request_count() == 0


@pytest.mark.slow
def test_sql_command_reads_the_snapshot(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["sql", "SELECT 1"]) == 2
    assert "no data yet" in capsys.readouterr().err
    assert run_slots([beijing("2026-01-05 00:30")], pipeline.instance).success
    assert main(["sql", "SELECT coins_reported, slot_time FROM coin_sum"]) == 0
    assert capsys.readouterr().out.split() == ["coins_reported", "slot_time", "27", "00:30"]
    assert main(["sql", "SELECT nope FROM coin_sum"]) == 2
    assert 'Referenced column "nope" not found' in capsys.readouterr().err
    # Python ignores SIGPIPE; had the command restored its default, the next write of any socket
    # of this process to a peer that has gone (the fake OKX answering a timed-out client) would
    # kill it.
    assert signal.getsignal(signal.SIGPIPE) == signal.SIG_IGN


@pytest.mark.slow
def test_sql_into_a_pipe_closed_early_ends_quietly(pipeline: Pipeline) -> None:
    assert run_slots([beijing("2026-01-05 00:30")], pipeline.instance).success
    coinsum = Path(sys.executable).parent / "coinsum"
    shell = f"'{coinsum}' sql 'SELECT * FROM coin_prices, range(2000)' | head -n 1"
    done = subprocess.run(
        ["bash", "-o", "pipefail", "-c", shell], capture_output=True, text=True, timeout=60
    )
    assert (done.returncode, done.stderr) == (0, "")
    assert done.stdout.split()[:2] == ["slot_start", "trade_date"]


def test_day_boundaries_are_beijing_midnight() -> None:
    assert day_start(date(2026, 1, 5)).isoformat() == "2026-01-05T00:00:00+08:00"
    assert midnight_ms(date(2026, 1, 5)) == 1767542400000  # 2026-01-04 16:00 UTC
    assert epoch_ms(day_start(date(2026, 1, 5)) + 47 * SLOT) == 1767542400000 + 47 * 1_800_000


@pytest.mark.slow
def test_a_future_to_stops_at_today_and_says_so(
    pipeline: Pipeline, clock_at, capsys: pytest.CaptureFixture[str]
) -> None:
    clock_at("2026-01-06 01:10")  # today's slots so far: 00:00, 00:30, 01:00
    assert main(["backfill", "--from", "2026-01-05", "--to", "2026-01-09"]) == 0
    out = capsys.readouterr().out
    assert "note: --to 2026-01-09 is in the future; stopping at today, 2026-01-06" in out
    assert "coinsum backfill 2026-01-05 .. 2026-01-06: 51 slots" in out
    assert pipeline.query("SELECT count(*) FROM coin_sum") == [(51,)]
    assert main(["export", "--from", "2026-01-06", "--to", "2026-01-30"]) == 0
    out = capsys.readouterr().out
    assert "stopping at today" in out and "sum_2026-01-06.csv  (3 rows)" in out
    for command in ("backfill", "export"):
        assert main([command, "--from", "2026-01-07", "--to", "2026-01-08"]) == 2
        assert "--from 2026-01-07 is in the future: today in Beijing is" in capsys.readouterr().err


@pytest.mark.slow
def test_status_expects_todays_slots_so_far_and_keeps_to_the_range(
    pipeline: Pipeline, clock_at, capsys: pytest.CaptureFixture[str]
) -> None:
    clock_at("2026-01-06 16:40")
    assert main(["backfill", "--from", "2026-01-05", "--to", "2026-01-06"]) == 0
    capsys.readouterr()
    assert main(["status"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = [line.split()[:4] for line in lines[1:3]]
    assert expected == [["2026-01-05", "48", "48", "48"], ["2026-01-06", "34", "34", "34"]]
    assert lines[-1].endswith("newest slot 2026-01-06 16:30")
    assert main(["status", "--to", "2026-01-05"]) == 0
    assert capsys.readouterr().out.splitlines()[-1].endswith("newest slot 2026-01-05 23:30")


def test_every_slot_of_a_ranged_run_carries_its_own_sum_for_dagsters_plot(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COINSUM_COINS", "BTC,ETH,NOPE")  # NOPE: no slot is complete
    slots = list(slots_in(beijing("2026-01-05 00:00"), beijing("2026-01-05 03:00")))
    assert run_slots(slots, pipeline.instance).success
    records = pipeline.instance.fetch_materializations(SLOTS, limit=100).records
    assert len(records) == len(slots), "one materialization per slot, nothing extra"
    plotted = {
        r.partition_key: (
            r.asset_materialization.metadata["sum_pct"].value,
            r.asset_materialization.metadata["coins_reported"].value,
        )
        for r in records
    }
    stored = pipeline.query("SELECT slot_start, sum_pct, coins_reported FROM coin_sum")
    assert plotted == {f"{s:%Y-%m-%d-%H:%M}": (total, n) for s, total, n in stored}
    assert len(set(plotted.values())) == len(slots) and {n for _, n in plotted.values()} == {2}
