"""End to end, the way a user works: `coinsum dev` against the fake OKX, a backfill launched
through the UI's GraphQL API, then the asset pages opened in headless Chromium."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import date
from pathlib import Path

import pytest

from coinsum_pipeline.backfill import export_range
from coinsum_pipeline_tests.browser import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    free_port,
    graphql,
    needs_chromium,
    serving,
)
from coinsum_pipeline_tests.helpers import Pipeline

DAY = "2026-01-05"
LAUNCH = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    __typename
    ... on PartitionBackfill { status }
  }
}"""

pytestmark = needs_chromium


@pytest.fixture
def dagster_ui(pipeline: Pipeline) -> Iterator[str]:
    """`coinsum dev` on a free port, on the test's instance, fake OKX and DuckDB file.

    Live collection and gap repair are turned off first, as a user would in the UI: on the real
    clock they would collect today's slots and the last 48 hours beside the backfill, and this
    test counts what the backfill stored (those two have tests of their own).
    """
    dagster = Path(sys.executable).parent / "dagster"
    workspace = Path(__file__).resolve().parents[1] / "workspace.yaml"
    for kind, name in (("schedule", "live_slots"), ("sensor", "gap_repair")):
        # No pipes: the code server this command starts may outlive it for a while.
        subprocess.run(
            [dagster, kind, "stop", name, "-w", workspace],
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            timeout=120,
        )
    port = free_port()
    command = [Path(sys.executable).parent / "coinsum", "dev", "-p", str(port)]
    with serving(command, os.environ.copy(), pipeline.db.parent / "dagster-dev.log"):
        yield f"http://127.0.0.1:{port}"


def backfill_through_the_ui(url: str, asset: str, partitions: list[str]) -> None:
    """What the UI's "Materialize…" dialog sends, then wait for the backfill daemon to finish."""
    params = {"assetSelection": [{"path": [asset]}], "partitionNames": partitions}
    launched = graphql(url, LAUNCH, {"params": params})["launchPartitionBackfill"]
    assert launched["__typename"] == "LaunchBackfillSuccess", launched
    deadline = time.monotonic() + 300
    while True:
        status = graphql(url, STATUS, {"id": launched["backfillId"]})
        state = status["partitionBackfillOrError"]["status"]
        if state in ("COMPLETED", "COMPLETED_SUCCESS"):
            return
        assert state in ("REQUESTED", "IN_PROGRESS"), f"backfill ended {state}"
        assert time.monotonic() < deadline, f"backfill still {state} after 300 s"
        time.sleep(2)


def test_ui_backfill_then_the_asset_pages_show_partitions_and_charts(
    pipeline: Pipeline, dagster_ui: str
) -> None:
    from playwright.sync_api import sync_playwright

    assert CHROMIUM, "chromium is not installed: `apt-get install chromium`"
    slots = [f"{DAY}-{h:02d}:{m:02d}" for h in range(24) for m in (0, 30)]
    backfill_through_the_ui(dagster_ui, "basket_slots", slots)
    assert pipeline.query("SELECT count(*) FROM coin_sum") == [(48,)]
    # The day's exports as `coinsum backfill` writes them (a second UI backfill would only add
    # another minute of daemon ticks; the sensor test covers the automatic path).
    assert export_range(date(2026, 1, 5), date(2026, 1, 5), pipeline.instance).success

    ARTIFACTS.mkdir(exist_ok=True)
    with sync_playwright() as play:
        browser = play.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 1600, "height": 1200})

        page.goto(f"{dagster_ui}/assets/basket_slots?view=partitions")
        page.get_by_text("Materialized (48)").first.wait_for(timeout=60_000)
        page.screenshot(path=ARTIFACTS / "basket_slots_partitions.png", full_page=True)

        page.goto(f"{dagster_ui}/assets/day_exports")
        # Markdown metadata opens in a dialog: the curve is an inline PNG there.
        page.locator("tr", has_text="curve").get_by_text("[Show Markdown]").click()
        chart = page.locator("img[src^='data:image/png;base64,']").first
        chart.wait_for(timeout=60_000)
        assert chart.bounding_box()["width"] > 300, "the curve is drawn at a readable size"
        page.screenshot(path=ARTIFACTS / "day_exports_curve.png")
        browser.close()
