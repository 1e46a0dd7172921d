"""The board's JSON API and downloads, served over HTTP on loopback from a real snapshot with a
missing value of every reason: every field what SQL holds, every refusal a message."""

from __future__ import annotations

import contextlib
import io
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import duckdb
import pytest
import requests
from dagster import DagsterInstance

from coinsum_pipeline.cli import main
from coinsum_pipeline.core.slots import epoch_ms
from coinsum_pipeline.warehouse.database import publish_snapshot
from coinsum_pipeline_tests.browser import free_port
from coinsum_pipeline_tests.helpers import Pipeline, beijing, market_at, serving_board

# One worker builds the market once for every test here (scripts/test: --dist loadgroup).
pytestmark = [pytest.mark.xdist_group("board"), pytest.mark.slow]
DAY, TODAY = "2026-01-05", "2026-01-06"
NOW = beijing(f"{TODAY} 15:10")
SUM_COLUMNS = (
    "slot_ts_ms, sum_pct, coins_reported, coins_expected, complete, coins_up, coins_down, "
    "coins_flat, best_coin, best_pct, worst_coin, worst_pct, median_pct"
)


@pytest.fixture(scope="module")
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """Yesterday whole and today to 15:00 (the clock stays at 15:10 Beijing, ticking), with
    every reason a value can be missing for: NOPE is no OKX swap (unknown_instrument), NEW is
    listed at 09:10 yesterday (not_listed, then no_base), ETH has no candles 04:00 to 05:00
    yesterday (no_candle), and one coin's fetch fails today (fetch_failed)."""
    home = tmp_path_factory.mktemp("board")
    with market_at(NOW, home, ["BTC", "ETH", "SOL", "NEW", "NOPE"]) as okx:
        okx.instruments["NEW-USDT-SWAP"] = epoch_ms(beijing(f"{DAY} 09:10"))
        okx.gaps["ETH-USDT-SWAP"] = [
            (epoch_ms(beijing(f"{DAY} 04:00")), epoch_ms(beijing(f"{DAY} 05:00")))
        ]
        with contextlib.redirect_stdout(io.StringIO()):
            assert main(["backfill", "--from", DAY, "--to", DAY]) == 0
            okx.failing["SOL-USDT-SWAP"] = "51000"
            assert main(["backfill", "--from", TODAY, "--to", TODAY, "--fail-fast"]) == 1
            del okx.failing["SOL-USDT-SWAP"]
        with DagsterInstance.get() as instance:
            yield Pipeline(okx, instance, home / "coinsum.duckdb", home / "exports")


@pytest.fixture(scope="module")
def board(market: Pipeline) -> Iterator[str]:
    with serving_board(market.db) as url:
        yield url


def get(url: str) -> requests.Response:
    return requests.get(url, timeout=10)


def test_one_worker_runs_every_test_here(request: pytest.FixtureRequest) -> None:
    """The group is xdist's note on the test's id: without it (pytest-xdist#1386, pyproject.toml
    keeps pytest below 9.2 for it) every worker builds the market again, a minute of CI each."""
    if not getattr(request.config.option, "loadgroup", False):  # set on xdist's workers
        pytest.skip("the tests are not distributed by group (scripts/test runs them so)")
    assert request.node.nodeid.endswith("@board")


def test_the_data_has_a_missing_value_of_every_reason(market: Pipeline) -> None:
    reasons = {reason for (reason,) in market.query("SELECT DISTINCT reason FROM missing_values")}
    assert reasons == {"unknown_instrument", "not_listed", "no_base", "no_candle", "fetch_failed"}


def test_sums_are_slot_sums_field_by_field_at_full_precision(market: Pipeline, board: str) -> None:
    answer = get(f"{board}/api/sums?from={DAY}&to={TODAY}")
    assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
    stored = market.query(
        f"SELECT strftime(slot_start, '%Y-%m-%d %H:%M'), {SUM_COLUMNS} FROM slot_sums "
        "ORDER BY slot_start"
    )
    names = ["slot", *(name.strip() for name in SUM_COLUMNS.split(","))]
    assert answer.json() == [dict(zip(names, row, strict=True)) for row in stored]
    assert len(stored) == 48 + 31
    one_day = get(f"{board}/api/sums?from={TODAY}").json()
    assert [s["slot"] for s in one_day] == [row[0] for row in stored[48:]], "to defaults to from"


def test_a_slot_is_its_coins_and_its_missing_coins_with_reasons(
    market: Pipeline, board: str
) -> None:
    checked = set()
    for slot, ts in market.query(
        "SELECT DISTINCT strftime(slot_start, '%Y-%m-%dT%H:%M'), slot_start FROM missing_values "
        "ORDER BY 2"
    ):
        answer = get(f"{board}/api/slot?at={slot}").json()
        head = market.query(
            "SELECT slot_ts_ms, sum_pct, coins_reported, coins_expected FROM coin_sum "
            "WHERE slot_start = ?",
            [ts],
        )[0]
        assert answer["slot"] == slot.replace("T", " ")
        assert (
            answer["slot_ts_ms"],
            answer["sum_pct"],
            answer["coins_reported"],
            answer["coins_expected"],
        ) == head
        coins = market.query(
            "SELECT coin, base_price, price, pct_change FROM coin_prices WHERE slot_start = ? "
            "ORDER BY pct_change DESC, coin",
            [ts],
        )
        assert [tuple(c.values()) for c in answer["coins"]] == coins
        assert list(answer["coins"][0]) == ["coin", "base_price", "price", "pct_change"]
        missing = market.query(
            "SELECT coin, reason, detail FROM missing_values WHERE slot_start = ? ORDER BY coin",
            [ts],
        )
        assert [(m["coin"], m["reason"], m["detail"]) for m in answer["missing"]] == missing
        checked |= {m["reason"] for m in answer["missing"]}
    assert len(checked) == 5, "a slot of every reason was checked"

    latest = get(f"{board}/api/latest").json()
    assert latest == get(f"{board}/api/slot?at={TODAY}T15:00").json()


def test_the_day_table_is_the_days_changes_with_the_reasons_beside(
    market: Pipeline, board: str
) -> None:
    table = get(f"{board}/api/day?date={DAY}").json()
    assert table["coins"] == ["BTC", "ETH", "SOL", "NEW", "NOPE"]
    assert [row["time"] for row in table["slots"]] == [
        t for (t,) in market.query(f"SELECT slot_time FROM coin_sum WHERE trade_date = '{DAY}'")
    ]
    changes = {
        (time, coin): pct
        for time, coin, pct in market.query(
            "SELECT slot_time, coin, pct_change FROM coin_prices WHERE trade_date = ?", [DAY]
        )
    }
    reasons = {
        (time, coin): reason
        for time, coin, reason in market.query(
            "SELECT slot_time, coin, reason FROM missing_values WHERE trade_date = ?", [DAY]
        )
    }
    for row in table["slots"]:
        for coin, pct in zip(table["coins"], row["pct_change"], strict=True):
            assert pct == changes.get((row["time"], coin))
            if pct is None:
                assert row["missing"][coin]["reason"] == reasons[(row["time"], coin)]
    assert sum(len(row["missing"]) for row in table["slots"]) == len(reasons)


@pytest.mark.parametrize(
    ("path", "status", "says"),
    [
        ("/api/sums", 400, "give from=YYYY-MM-DD"),
        ("/api/sums?from=2026-1-5x&to=2026-01-06", 400, "'2026-1-5x' is not a date"),
        (f"/api/sums?from={TODAY}&to={DAY}", 400, f"from {TODAY} is after to {DAY}"),
        ("/api/sums?from=2024-01-01&to=2026-01-06", 400, "ask for at most 731"),
        ("/api/slot", 400, "give at=YYYY-MM-DDTHH:MM"),
        (f"/api/slot?at={DAY}T10:15", 400, "slots start at :00 and :30"),
        (f"/api/slot?at={DAY}+25:00", 400, "is not a slot"),
        ("/api/slot?at=2025-12-01T10:30", 404, "slot 2025-12-01 10:30 (Beijing) is not stored"),
        ("/api/day?date=yesterday", 400, "'yesterday' is not a date"),
        ("/api/nothing", 404, "the API is /api/sums"),
        (f"/download/prices.csv?from={DAY}", 404, "the CSVs are full, sum, missing, day_table"),
        (f"/download/sum.csv?from={TODAY}&to={DAY}", 400, "is after"),
    ],
)
def test_bad_input_is_refused_with_what_to_change(
    board: str, path: str, status: int, says: str
) -> None:
    answer = get(f"{board}{path}")
    assert answer.status_code == status
    assert says in answer.json()["error"]


def test_downloads_are_the_exported_files_byte_for_byte(
    market: Pipeline, board: str, tmp_path: Path
) -> None:
    day_folder = market.exports / DAY
    for kind in ("full", "sum", "missing", "day_table"):
        answer = get(f"{board}/download/{kind}.csv?from={DAY}&to={DAY}")
        assert answer.headers["content-disposition"] == f'attachment; filename="{kind}_{DAY}.csv"'
        assert answer.content == (day_folder / f"{kind}_{DAY}.csv").read_bytes()
    with contextlib.redirect_stdout(io.StringIO()):
        assert main(["export", "--from", DAY, "--to", TODAY, "--out", str(tmp_path)]) == 0
    for kind in ("full", "sum", "missing", "day_table"):
        name = f"{kind}_{DAY}_{TODAY}.csv"
        answer = get(f"{board}/download/{kind}.csv?from={DAY}&to={TODAY}")
        assert answer.content == (tmp_path / name).read_bytes(), name
        assert answer.content.startswith(b"\xef\xbb\xbf")


def test_meta_tells_the_page_its_days_clock_and_colours(board: str) -> None:
    asked = time.time() * 1000  # the process's clock: NOW when the market was built, ticking
    meta = get(f"{board}/api/meta").json()
    answered = time.time() * 1000
    assert (meta["first_day"], meta["last_day"], meta["today"]) == (DAY, TODAY, TODAY)
    assert meta["newest_slot"] == f"{TODAY} 15:00"
    assert asked - 1000 <= meta["now_ms"] <= answered + 1000, "the board's clock is the process's"
    assert meta["colors"]["up"] == "#d73027", "cn: red is up"
    assert meta["colors"]["scale"][-1] == "#a50026" and meta["colors"]["scale"][0] == "#006837"


def test_the_board_follows_each_new_snapshot_and_never_fails_during_a_replace(
    market: Pipeline, tmp_path: Path
) -> None:
    """A reader polling while the pipeline replaces the snapshot over and over gets the old or
    the new file, never an error, and sees a new slot on the next request after its publish.
    (On a copy of the market without its 15:00 slot, so the other tests' market stays put.)"""
    database = tmp_path / "coinsum.duckdb"
    shutil.copyfile(market.db, database)
    with duckdb.connect(str(database)) as conn:
        for table in ("coin_prices", "missing_values", "coin_sum"):
            conn.execute(f"DELETE FROM {table} WHERE slot_start = ?", [NOW.replace(minute=0)])
    publish_snapshot(database)
    with serving_board(database) as url:
        assert get(f"{url}/api/latest").json()["slot"] == f"{TODAY} 14:30"
        stop, answers = threading.Event(), []

        def poll() -> None:
            while not stop.is_set():
                answers.append(get(f"{url}/api/latest").status_code)

        pollers = [threading.Thread(target=poll) for _ in range(3)]
        for poller in pollers:
            poller.start()
        published = 0
        while published < 30 or len(answers) < 60:  # replaces and requests, interleaved
            publish_snapshot(database)
            published += 1
        shutil.copyfile(market.db, database)  # as a run writes the 15:00 slot
        publish_snapshot(database)
        latest = get(f"{url}/api/latest").json()
        stop.set()
        for poller in pollers:
            poller.join()
    assert latest["slot"] == f"{TODAY} 15:00"
    assert set(answers) == {200}


@pytest.mark.services
def test_serve_board_listens_stops_on_sigterm_and_names_a_taken_port(market: Pipeline) -> None:
    port = free_port()
    coinsum = Path(sys.executable).parent / "coinsum"
    env = {**os.environ, "COINSUM_DB": str(market.db)}
    board = subprocess.Popen(
        [coinsum, "serve", "board", "--port", str(port)],
        env=env,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert board.stdout.readline().strip() == f"coinsum board: http://127.0.0.1:{port}"
        assert get(f"http://127.0.0.1:{port}/api/latest").status_code == 200
        page = get(f"http://127.0.0.1:{port}/")
        assert "/static/vendor/echarts.min.js" in page.text and "coinsum" in page.text
        taken = subprocess.run(
            [coinsum, "serve", "board", "--port", str(port)],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert taken.returncode == 2
        assert f"cannot listen on 127.0.0.1:{port}: another process listens there" in taken.stderr
        started = time.monotonic()
        board.send_signal(signal.SIGTERM)
        board.wait(timeout=10)  # uvicorn stops gracefully, then ends by the signal it got
        assert time.monotonic() - started < 5
    finally:
        board.kill()
        board.wait()
