"""The board as a trader uses it, in headless Chromium: today's curve, a click for a slot's coins,
another day and its table, a 14-day range, a slot that arrives while the page is open, and a
download. Screenshots go to ``test-artifacts/``."""

# The page speaks Chinese, full-width colons included.
# ruff: noqa: RUF001

from __future__ import annotations

import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest
from dagster import DagsterInstance

from coinsum_pipeline.backfill import backfill, export_range, run_slots
from coinsum_pipeline.core.basket import DEFAULT_COINS
from coinsum_pipeline.core.slots import day_start, epoch_ms, slots_in
from coinsum_pipeline_tests.browser import ARTIFACTS, browser_page, needs_chromium
from coinsum_pipeline_tests.helpers import Pipeline, beijing, market_at, serving_board

pytestmark = [needs_chromium, pytest.mark.browser]
FIRST, TODAY, OTHER = "2026-01-03", "2026-01-16", "2026-01-10"
NOW = beijing(f"{TODAY} 15:10")
CLICKED = f"{TODAY} 10:30"  # ETH has no candle there
POINTS = "board.chart.getOption().series[0].data.filter((d) => d[1] !== null).length"


@pytest.fixture
def market(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pipeline]:
    """13 whole days and today to 14:30 (15:00 is held back), the 27 coins and NOPE, which
    OKX does not list; the clock at 15:10 Beijing, ticking."""
    home = tmp_path_factory.mktemp("board_page")
    with market_at(NOW, home, [*DEFAULT_COINS, "NOPE"]) as okx:
        okx.gaps["ETH-USDT-SWAP"] = [
            (epoch_ms(beijing(f"{TODAY} 10:00")), epoch_ms(beijing(f"{TODAY} 11:00")))
        ]
        with DagsterInstance.get() as instance:
            # The days before today as `coinsum backfill` stores them; of their exports, the one
            # day's the page downloads.
            history = backfill(date.fromisoformat(FIRST), date(2026, 1, 15), NOW, instance)
            assert all(run.success for run in history)
            other = date.fromisoformat(OTHER)
            assert export_range(other, other, instance).success
            today = list(slots_in(day_start(NOW.date()), beijing(f"{TODAY} 15:00")))
            assert run_slots(today, instance).success
            yield Pipeline(okx, instance, home / "coinsum.duckdb", home / "exports")


def shoot(page, name: str) -> None:  # page: Playwright's Page
    page.wait_for_timeout(300)  # the chart's last frame
    page.screenshot(path=str(ARTIFACTS / name), full_page=True)


def test_the_board_shows_today_live_a_slots_coins_any_day_and_its_files(
    market: Pipeline,
) -> None:
    with serving_board(market.db) as url, browser_page() as page:
        problems: list[str] = []
        asked: list[str] = []
        page.on("console", lambda m: m.type == "error" and problems.append(m.text))
        page.on("pageerror", lambda e: problems.append(str(e)))
        page.on("request", lambda r: asked.append(r.url))
        page.goto(url)
        page.wait_for_selector("#day-table")

        # Today: a point per stored slot, the header on the newest.
        stored = market.query(f"SELECT count(*) FROM slot_sums WHERE trade_date = '{TODAY}'")[0][0]
        assert page.evaluate(POINTS) == stored == 30
        assert f"{TODAY} 14:30" in page.inner_text("#newest")
        assert page.inner_text("#badge") == f"延迟：{TODAY} 15:00 时段尚未写入", "10 min late"
        shoot(page, "board-today.png")

        # Click the 10:30 point: its coins as stored, ETH and NOPE missing with their reasons.
        ts, total = market.query(
            "SELECT slot_ts_ms, sum_pct FROM coin_sum WHERE slot_start = ?",
            [beijing(CLICKED).replace(tzinfo=None)],
        )[0]
        x, y = page.evaluate(
            f"board.chart.convertToPixel({{gridIndex: 0}}, [{ts} + 8 * 3600 * 1000, {total}])"
        )
        box = page.locator("#chart").bounding_box()
        page.mouse.click(box["x"] + x, box["y"] + y)
        page.locator("#slot h2", has_text=CLICKED).wait_for()
        rows = page.locator("#slot-coins tbody tr").all_inner_texts()
        coins = market.query(
            "SELECT coin, base_price, price, pct_change FROM coin_prices WHERE slot_start = ? "
            "ORDER BY pct_change DESC, coin",
            [beijing(CLICKED).replace(tzinfo=None)],
        )
        shown = [row.split("\t") for row in rows[: len(coins)]]
        assert [cells[0] for cells in shown] == [coin for coin, *_ in coins]
        for cells, (_, base, price, pct) in zip(shown, coins, strict=True):
            assert (float(cells[1]), float(cells[2])) == (base, price), "prices as stored"
            assert cells[3] == (f"{pct:+.2f}%" if pct > 0 else f"{pct:.2f}%"), "2 decimals"
        missing = [row.split("\t") for row in rows[len(coins) :]]
        assert [(cells[0], "no_candle" in cells[1]) for cells in missing] == [
            ("ETH", True),
            ("NOPE", False),
        ]
        assert "unknown_instrument" in missing[1][1]
        link = page.locator("#slot .links a").get_attribute("href")
        assert link == "http://127.0.0.1:3000/assets/basket_slots?view=partitions&partition=" + (
            "2026-01-16-10%3A30"
        ), "to the slot's partition in the Dagster UI"
        shoot(page, "board-clicked-point.png")

        # A slot written while the page is open appears without a reload.
        page.evaluate("window.stillThere = true")
        written = time.monotonic()
        assert run_slots([beijing(f"{TODAY} 15:00")], market.instance).success
        page.wait_for_function(f"{POINTS} === 31", timeout=10_000)
        print(f"15:00 on the page {time.monotonic() - written:.1f} s after its run started")
        assert page.evaluate("window.stillThere") is True, "no reload"
        assert f"{TODAY} 15:00" in page.inner_text("#newest")
        assert page.inner_text("#badge") == "不完整：27/28 币", "on time now; NOPE never reports"

        # Another day: the curve and the table redrawn for it.
        for field in ("#from", "#to"):
            page.fill(field, OTHER)
            page.dispatch_event(field, "change")
        page.locator("#day h2", has_text=OTHER).wait_for()
        page.wait_for_function(f"{POINTS} === 48")
        assert page.locator("#day-table tbody tr").count() == 48
        assert page.locator("#day-table thead th").count() == 1 + 28 + 2
        grey = page.locator("#day-table td.gap").first
        assert "unknown_instrument" in grey.get_attribute("title")
        shoot(page, "board-day-table.png")

        # Its sum CSV, downloaded: the exported file, byte for byte.
        with page.expect_download() as download:
            page.locator("#day .links a", has_text="总和").click()
        exported = market.exports / OTHER / f"sum_{OTHER}.csv"
        assert download.value.suggested_filename == exported.name
        assert Path(download.value.path()).read_bytes() == exported.read_bytes()

        # 14 days: every stored slot of the range, the day boundaries marked.
        page.get_by_role("button", name="14天").click()
        page.wait_for_function(f"{POINTS} === {13 * 48 + 31}")
        boundaries = page.evaluate("board.chart.getOption().series[0].markLine.data.length")
        assert boundaries == 1 + 13, "the zero line and a line at each day's start"
        shoot(page, "board-14-days.png")

        # English, on a click, and still after a reload.
        page.click("#lang")
        page.locator("h1", has_text="coinsum board").wait_for()
        page.locator("#day h2", has_text="Day table").wait_for()
        assert "27-coin sum" in page.inner_text("#day-table thead")
        page.reload()
        page.locator("#day h2", has_text="Day table").wait_for()
        assert page.inner_text("#lang") == "中文"

        assert problems == []
        assert all(u.startswith(url) for u in asked), [u for u in asked if not u.startswith(url)]
