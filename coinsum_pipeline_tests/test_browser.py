"""End to end, the way a user works: `coinsum dev` against the fake OKX, a backfill launched
through the UI's GraphQL API, then the asset pages opened in headless Chromium."""

from __future__ import annotations

import os
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from coinsum_pipeline.core.slots import epoch_ms
from coinsum_pipeline_tests.browser import (
    ARTIFACTS,
    backfill_through_the_ui,
    browser_page,
    free_port,
    graphql,
    needs_chromium,
    serving,
    turn_off_live_collection,
)
from coinsum_pipeline_tests.helpers import Pipeline, beijing

DAYS = ("2026-01-05", "2026-01-06")
# The natural size of the image a page shows.
SIZE = "({width: document.images[0].naturalWidth, height: document.images[0].naturalHeight})"
pytestmark = [needs_chromium, pytest.mark.browser, pytest.mark.services]


@pytest.fixture
def dagster_ui(pipeline: Pipeline) -> Iterator[str]:
    """`coinsum dev` on a free port, on the test's instance, fake OKX and DuckDB file.

    Live collection and gap repair are turned off first: this test counts what the backfill
    stored (those two have tests of their own).
    """
    turn_off_live_collection(os.environ.copy())
    port = free_port()
    command = [Path(sys.executable).parent / "coinsum", "dev", "-p", str(port)]
    with serving(command, os.environ.copy(), pipeline.db.parent / "dagster-dev.log"):
        yield f"http://127.0.0.1:{port}"


CHECK_STATUSES = """{ assetNodes(assetKeys: [{path: ["basket_slots"]}]) { assetChecksOrError {
    ... on AssetChecks { checks { name partitionStatuses {
        ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } } } } } } } }"""


def check_ranges(check: dict) -> list[dict]:
    return (check["partitionStatuses"] or {}).get("ranges", [])


def test_ui_backfill_then_the_asset_pages_show_partitions_and_charts(
    pipeline: Pipeline, dagster_ui: str
) -> None:
    slots = [f"{day}-{h:02d}:{m:02d}" for day in DAYS for h in range(24) for m in (0, 30)]
    gap = slots[50]  # ETH has no candle there: one failing slot
    pipeline.okx.gaps["ETH-USDT-SWAP"] = [(epoch_ms(beijing(f"{gap[:10]} {gap[11:]}")),) * 2]
    backfill_through_the_ui(dagster_ui, "basket_slots", slots)
    assert pipeline.query("SELECT count(*) FROM coin_sum") == [(96,)]
    # One run of 96 slots: its checks give the failing slot its own result, the passing ones a
    # summary, so the UI shows them skipped by the run (the documented trade-off).
    checks = graphql(dagster_ui, CHECK_STATUSES, {})["assetNodes"][0]["assetChecksOrError"]
    ranges = {
        check["name"]: [(r["startKey"], r["endKey"], r["status"]) for r in check_ranges(check)]
        for check in checks["checks"]
        if check["name"] != "freshness_check"
    }
    assert ranges == {
        "slot_completeness": [
            (slots[0], slots[49], "SKIPPED"),
            (gap, gap, "FAILED"),
            (slots[51], slots[-1], "SKIPPED"),
        ],
        "base_matches_okx": [(slots[0], slots[-1], "SKIPPED")],
        "no_extreme_moves": [(slots[0], slots[-1], "SKIPPED")],
    }
    # The two days' exports, backfilled through the UI too: one ranged run.
    backfill_through_the_ui(dagster_ui, "day_exports", list(DAYS))

    with browser_page() as page:
        page.goto(f"{dagster_ui}/assets/basket_slots?view=partitions")
        page.get_by_text("Materialized (96)").first.wait_for(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "basket_slots_partitions.png", full_page=True)
        page.goto(f"{dagster_ui}/assets/basket_slots?view=checks")
        page.get_by_text("slot_completeness").first.click()
        page.get_by_text("Failed").first.wait_for(timeout=60_000)
        page.wait_for_timeout(1000)
        page.screenshot(path=ARTIFACTS / "basket_slots_check_partitions.png", full_page=True)

        curves = []
        for day in DAYS:
            page.goto(f"{dagster_ui}/assets/day_exports?view=partitions&partition={day}")
            # Markdown metadata opens in a dialog: the curve is an inline PNG preview there.
            page.locator("tr", has_text="curve").get_by_text("[Show Markdown]").first.click()
            chart = page.locator("img[src^='data:image/png;base64,']").first
            chart.wait_for(timeout=60_000)
            assert chart.bounding_box()["width"] > 300, "the curve is drawn at a readable size"
            curves.append(chart.get_attribute("src"))
            page.wait_for_timeout(600)  # the dialog's fade-in
            page.screenshot(path=ARTIFACTS / f"day_exports_curve_{day}.png")
        assert curves[0] != curves[1], "each day's page shows its own curve"

        # The day table as users open the file: at native size, 100 %.
        for day in DAYS:
            image = pipeline.exports / day / f"day_table_{day}.png"
            page.goto(image.as_uri())
            page.set_viewport_size(page.evaluate(SIZE))
            page.screenshot(path=ARTIFACTS / f"day_table_{day}_native.png")
