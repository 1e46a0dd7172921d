"""A stored day never changes meaning: the database remembers its basket by day, a different
COINSUM_COINS is refused unless the change is recorded, and every slot says which coins its sum
is over."""

from __future__ import annotations

from datetime import date

import pytest
from dagster import DagsterEventType

from coinsum_pipeline.backfill import run_slots
from coinsum_pipeline.cli import main
from coinsum_pipeline.core.basket import (
    DEFAULT_COINS,
    BasketError,
    BasketHistory,
    parse_basket,
)
from coinsum_pipeline_tests.helpers import Pipeline, beijing, read_csv

DAY1 = ["--from", "2026-01-05", "--to", "2026-01-05"]
DAY2 = ["--from", "2026-01-06", "--to", "2026-01-06"]
ALL_27 = ",".join(DEFAULT_COINS)


def first_day(pipeline: Pipeline) -> dict[str, list[tuple]]:
    """Everything stored about 2026-01-05 that a later run must not change."""
    where = "WHERE trade_date = DATE '2026-01-05' ORDER BY slot_start"
    return {
        "prices": pipeline.query(
            f"SELECT slot_start, coin, base_price, price, pct_change FROM coin_prices {where}, coin"
        ),
        "sums": pipeline.query(
            f"SELECT slot_start, sum_pct, coins_reported, coins_expected, basket FROM coin_sum "
            f"{where}"
        ),
        "day_table": pipeline.query(f"SELECT * FROM day_table {where}"),
    }


@pytest.mark.slow
def test_another_basket_is_refused_then_recorded_and_no_stored_day_changes(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COINSUM_COINS", "")  # unset, on a new database: the default 27
    assert main(["backfill", *DAY1]) == 0
    before = first_day(pipeline)
    assert len(before["prices"]) == 1296 and {s[-1] for s in before["sums"]} == {ALL_27}
    columns = pipeline.query(
        "SELECT column_name FROM information_schema.columns WHERE table_name = 'day_table'"
    )
    assert [c for (c,) in columns][3:-2] == list(DEFAULT_COINS)
    non_null = sum(v is not None for row in before["day_table"] for v in row[3:-2])
    assert non_null == 1296
    capsys.readouterr()

    monkeypatch.setenv("COINSUM_COINS", "BTC-USDT-SWAP,ETH")  # one run's environment
    assert main(["backfill", *DAY2]) == 2
    refused = capsys.readouterr().err
    assert "COINSUM_COINS names 2 coins (BTC,ETH), but this database tracks 27" in refused
    assert "coinsum basket --set BTC,ETH --from YYYY-MM-DD" in refused
    assert first_day(pipeline) == before
    assert pipeline.query("SELECT count(*) FROM coin_sum") == [(48,)], "nothing was run"

    assert main(["basket", "--set", "BTC,ETH", "--from", "2026-01-06"]) == 0
    assert main(["backfill", *DAY2]) == 0
    assert main(["backfill", *DAY1]) == 0  # a re-run of the old day keeps its own basket
    assert first_day(pipeline) == before
    day2 = pipeline.query(
        "SELECT DISTINCT basket, coins_expected, complete FROM coin_sum "
        "WHERE trade_date = DATE '2026-01-06'"
    )
    assert day2 == [("BTC,ETH", 2, True)]
    by_day = dict(
        pipeline.query("SELECT trade_date::VARCHAR, count(*) FROM coin_prices GROUP BY 1")
    )
    assert by_day == {"2026-01-05": 1296, "2026-01-06": 96}
    history = pipeline.query(
        "SELECT effective_from::VARCHAR, coins, previous FROM baskets ORDER BY 1"
    )
    assert history == [("2026-01-05", ALL_27, None), ("2026-01-06", "BTC,ETH", ALL_27)]

    exports = pipeline.exports
    day1_table = read_csv(exports / "2026-01-05" / "day_table_2026-01-05.csv")
    day2_table = read_csv(exports / "2026-01-06" / "day_table_2026-01-06.csv")
    assert list(day1_table[0])[2:-1] == list(DEFAULT_COINS)
    assert list(day2_table[0])[2:-1] == ["BTC", "ETH"]
    capsys.readouterr()
    assert main(["basket"]) == 0
    shown = capsys.readouterr().out
    assert "2026-01-06      2" in shown and "BTC,ETH" in shown


@pytest.mark.slow
def test_a_run_with_another_basket_fails_without_retries(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The daemon's runs (schedule, gap repair, a UI backfill) meet the same rule."""
    assert run_slots([beijing("2026-01-05 10:00")], pipeline.instance).success
    monkeypatch.setenv("COINSUM_COINS", "BTC,ETH")
    asked = pipeline.okx.request_count()
    outcome = run_slots([beijing("2026-01-05 10:30")], pipeline.instance)
    assert not outcome.success and "coinsum basket --set BTC,ETH" in outcome.error
    retried = pipeline.instance.all_logs(outcome.run_id, of_type=DagsterEventType.STEP_UP_FOR_RETRY)
    assert retried == [] and pipeline.okx.request_count() == asked, "refused before asking OKX"
    monkeypatch.setenv("COINSUM_COINS", "")  # unset: the database's basket
    assert run_slots([beijing("2026-01-05 10:30")], pipeline.instance).success
    assert pipeline.query("SELECT DISTINCT coins_expected FROM coin_sum") == [(27,)]


def test_symbols_are_understood_or_refused_never_stored_as_new_coins() -> None:
    assert parse_basket("BTC-USDT-SWAP, eth ,sol-usdt-swap,BTC") == ("BTC", "ETH", "SOL")
    for bad in ("BTC-USDT", "ETH-USD-SWAP", "BTC-USDT-250327"):
        with pytest.raises(BasketError, match="write BTC or BTC-USDT-SWAP"):
            parse_basket(f"SOL,{bad}")


def test_each_day_takes_the_basket_in_force_from_its_change_on() -> None:
    history = BasketHistory(
        ((date(2026, 1, 5), ("BTC", "ETH")), (date(2026, 1, 8), ("SOL", "BTC")))
    )
    assert history.on(date(2026, 1, 1)) == ("BTC", "ETH"), "the first basket covers earlier days"
    assert history.on(date(2026, 1, 7)) == ("BTC", "ETH")
    assert history.on(date(2026, 1, 8)) == history.current == ("SOL", "BTC")
    assert history.coins_of([date(2026, 1, 9), date(2026, 1, 7)]) == ("BTC", "ETH", "SOL")
    assert history.all_coins() == ("BTC", "ETH", "SOL")


@pytest.mark.parametrize(
    ("typed", "message"),
    [
        ("", "--set '' names no coins: give the basket, e.g. --set BTC,ETH,SOL"),
        ("BTC,ET H", "--set 'BTC,ET H' has malformed coin symbols ['ET H']"),
        (",", "--set ',' names no coins"),
        ("BTC,ETH,ADA", "OKX lists no swap for ADA (ADA-USDT-SWAP), so every slot would be"),
    ],
)
def test_a_basket_change_names_what_was_typed_and_records_nothing_doubtful(
    pipeline: Pipeline, capsys: pytest.CaptureFixture[str], typed: str, message: str
) -> None:
    assert main(["basket", "--set", typed]) == 2
    assert message in capsys.readouterr().err
    assert not pipeline.db.exists(), "nothing recorded"


@pytest.mark.slow
def test_a_coin_okx_does_not_list_is_recorded_only_when_asked_and_then_reported(
    pipeline: Pipeline, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("COINSUM_COINS", "")  # the database's basket
    args = ["basket", "--set", "BTC,ETH,ADA", "--from", "2026-01-05", "--allow-unlisted"]
    assert main(args) == 0
    assert "note: OKX lists no swap for ADA" in capsys.readouterr().out
    assert main(["backfill", *DAY1]) == 0
    missing = pipeline.query("SELECT DISTINCT coin, reason FROM missing_values")
    assert missing == [("ADA", "unknown_instrument")]
    assert pipeline.query("SELECT DISTINCT coins_reported, coins_expected FROM coin_sum") == [
        (2, 3)
    ]
