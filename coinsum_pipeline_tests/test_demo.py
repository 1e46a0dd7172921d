"""`coinsum demo` as a newcomer runs it: one command, then a UI that is all green and moves.

The demo runs on the real clock. So as not to wait up to 30 minutes for its first live tick, the
test starts it with every one of its Python processes' wall clock shifted to 100 s before a
tick (``shifted_clock/sitecustomize.py``): the demo, the stand-in OKX and Dagster then agree on
a time at which the live schedule is about to collect a new slot.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

import duckdb
import pytest

from coinsum_pipeline_tests.browser import (
    ARTIFACTS,
    browser_page,
    free_port,
    graphql,
    needs_chromium,
    serving,
)

SHIFTED_CLOCK = Path(__file__).resolve().parent / "shifted_clock"
TICK_SECONDS = (0, 30 * 60)  # live_slots fires at :00 and :30
LEAD_SECONDS = 100  # the demo's backfill and start-up, with room for a busy CI machine
# One day of history keeps the start-up well inside the lead on a loaded machine: a tick that
# passes before the daemon's scheduler first looks is not Dagster's to take (gap repair
# collects that slot minutes later), so it would not show the live schedule at work.
DAYS = "1"
CHECKS = ("slot_completeness", "base_matches_okx", "no_extreme_moves", "freshness_check")
EXECUTIONS = """
query Executions($check: String!) {
  assetCheckExecutions(assetKey: {path: ["basket_slots"]}, checkName: $check, limit: 1000) {
    status
    partition
  }
}"""
LIVE_RUNS = """
{
  runsOrError(filter: {tags: [{key: "dagster/schedule_name", value: "live_slots"}]}) {
    ... on Runs { results { status tags { key value } } }
  }
}"""

pytestmark = [needs_chromium, pytest.mark.browser, pytest.mark.services]


def shift_to_before_a_tick(lead: float) -> tuple[float, float]:
    """The clock shift that puts the next live tick ``lead`` seconds after now, and that tick
    on the shifted clock."""
    now = time.time()
    hour = now - now % 3600
    ticks = [hour + h * 3600 + s for h in (0, 1) for s in TICK_SECONDS]
    tick = min(t for t in ticks if t - lead > now)
    return tick - lead - now, tick


def newest_slot(db: Path) -> tuple[str, int] | None:
    """The newest stored slot and its coins, from the readers' snapshot the UI users read."""
    snapshot = db.with_suffix(".read.duckdb")
    if not snapshot.exists():
        return None
    with duckdb.connect(str(snapshot), read_only=True) as conn:
        return conn.execute(
            "SELECT strftime(slot_start, '%Y-%m-%d %H:%M'), coins_reported FROM coin_sum "
            "ORDER BY slot_start DESC LIMIT 1"
        ).fetchone()


def test_demo_is_green_and_its_first_live_tick_adds_a_slot(tmp_path: Path) -> None:
    shift, tick = shift_to_before_a_tick(LEAD_SECONDS)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("COINSUM_", "DAGSTER_"))}
    env.update(
        PYTHONPATH=os.pathsep.join(filter(None, [str(SHIFTED_CLOCK), env.get("PYTHONPATH")])),
        COINSUM_CLOCK_SHIFT_SECONDS=str(shift),
    )
    folder, port = tmp_path / "demo", free_port()
    url = f"http://127.0.0.1:{port}"
    coinsum = Path(sys.executable).parent / "coinsum"
    command = [coinsum, "demo", "--days", DAYS, "--folder", folder, "-p", str(port)]
    log = tmp_path / "demo.log"
    with serving(command, env, log):
        late = time.time() + shift - tick
        assert late < 0, f"the demo took {LEAD_SECONDS + late:.0f} s to start: past the tick"
        backfilled = newest_slot(folder / "coinsum.duckdb")
        assert backfilled is not None and backfilled[1] == 27, backfilled

        # The first live tick: a run of live_slots stores the slot after the backfilled ones.
        deadline = time.monotonic() + (tick - shift - time.time()) + 180
        while True:
            runs = graphql(url, LIVE_RUNS, {})["runsOrError"]["results"]
            newest = newest_slot(folder / "coinsum.duckdb")
            if any(r["status"] == "SUCCESS" for r in runs) and newest != backfilled:
                break
            assert time.monotonic() < deadline, f"no live slot after the tick: {runs} {newest}"
            time.sleep(2)
        assert newest[1] == 27 and newest[0] > backfilled[0], (backfilled, newest)

        executions = {
            check: graphql(url, EXECUTIONS, {"check": check})["assetCheckExecutions"]
            for check in CHECKS
        }
        failed = {
            c: [e for e in runs if e["status"] in ("FAILED", "EXECUTION_FAILED")]
            for c, runs in executions.items()
        }
        assert executions["slot_completeness"], "the checks ran with the slots"
        assert not any(failed.values()), failed

        with browser_page() as page:
            page.goto(f"{url}/assets/basket_slots?view=checks")
            page.get_by_text("slot_completeness").first.wait_for(timeout=60_000)
            page.get_by_text("Passed").first.wait_for(timeout=60_000)
            page.screenshot(path=ARTIFACTS / "demo_checks.png", full_page=True)
            assert page.get_by_text("Failed", exact=True).count() == 0
    # No start-up notice a user cannot act on (services.py says why each would appear).
    output = log.read_text()
    assert "will not be used" not in output and "superseded" not in output
