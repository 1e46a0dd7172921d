"""Benchmark: the board's API and its page, on a 60-day and a year-long DuckDB file.

Builds the files first (the stand-in OKX's prices through coinsum's own fetch, arithmetic and
write, without Dagster and without the rate limits: what is measured here is reading, not
collecting), then serves each with `coinsum serve board`, as production does, and prints:

- the API's answer times (median and slowest of repeated requests): `/api/sums` for 14 days and
  for the whole file, `/api/slot`, `/api/latest`, `/api/day`, and their sizes;
- the page's first render in headless Chromium (navigation to the first view drawn whole:
  curve, breadth, the newest slot's coins, the day table) for today and for the whole file;
- on the whole file, how long a zoom and a pan of the curve take to redraw.

    .venv/bin/python bench/board.py                 # 60 days and 365 days up to yesterday
    .venv/bin/python bench/board.py --keep /tmp/b   # keep (and reuse) the files there
"""

from __future__ import annotations

import argparse
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import date, timedelta
from pathlib import Path

import requests

from coinsum_pipeline import clock
from coinsum_pipeline.core.basket import DEFAULT_COINS
from coinsum_pipeline.core.compute import compute_slot_tables
from coinsum_pipeline.core.slots import day_start, slots_in
from coinsum_pipeline.defs.resources import resolved
from coinsum_pipeline.okx.fake import FakeOKX
from coinsum_pipeline.okx.fetch import fetch_basket
from coinsum_pipeline.warehouse.database import replace_slots

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHUNK_DAYS = 30


def build(database: Path, first: date, last: date) -> float:
    """Write days ``first``..``last`` of the stand-in's market into ``database``; seconds."""
    started = time.perf_counter()
    os.environ["COINSUM_DB"] = str(database)
    with FakeOKX(rate_limits={}) as okx, resolved("database") as db:
        os.environ["OKX_BASE_URL"] = okx.url
        with resolved("okx") as market:
            log = logging.getLogger("bench")
            day = first
            while day <= last:
                end = min(day + timedelta(days=CHUNK_DAYS - 1), last)
                slots = list(slots_in(day_start(day), day_start(end + timedelta(days=1))))
                history = db.baskets(log, DEFAULT_COINS, first)
                fetched = fetch_basket(market.client, history.coins_of([day, end]), slots)
                tables = compute_slot_tables(slots, history.on, fetched)
                with db.write(log, history) as conn:
                    replace_slots(conn, slots[0], slots[-1], tables)
                day = end + timedelta(days=1)
    return time.perf_counter() - started


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def timed(session: requests.Session, url: str, times: int) -> tuple[float, float, int]:
    """Median and slowest ms of ``times`` requests, and the answer's size in bytes."""
    took, size = [], 0
    for _ in range(times):
        started = time.perf_counter()
        answer = session.get(url, timeout=60)
        took.append((time.perf_counter() - started) * 1000)
        assert answer.ok, answer.text
        size = len(answer.content)
    return statistics.median(took), max(took), size


def render(url: str, view: str, slots: int) -> dict[str, float]:
    """First render (ms from navigation) of ``view``, then on it a zoom and a pan."""
    from playwright.sync_api import sync_playwright

    with sync_playwright() as play:
        browser = play.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1600, "height": 1200})
        page.goto(f"{url}/#{view}")
        page.wait_for_function("window.board && window.board.shownAt", timeout=60_000)
        points = page.evaluate("board.chart.getOption().series[0].data.length")
        assert points >= slots, (points, slots)
        shown = page.evaluate("board.shownAt")
        redraw = """async ([start, end]) => {
            const begun = performance.now();
            await new Promise((done) => {
                const once = () => { board.chart.off("finished", once); done(); };
                board.chart.on("finished", once);
                board.chart.dispatchAction({ type: "dataZoom", start, end });
            });
            return performance.now() - begun;
        }"""
        zoom = page.evaluate(redraw, [40, 60])
        pan = page.evaluate(redraw, [45, 65])
        browser.close()
    return {"first render": shown, "zoom": zoom, "pan": pan}


def measure(database: Path, label: str) -> None:
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    env = {**os.environ, "COINSUM_DB": str(database)}
    coinsum = Path(sys.executable).parent / "coinsum"
    board = subprocess.Popen(
        [coinsum, "serve", "board", "--port", str(port)], env=env, stdout=subprocess.PIPE
    )
    try:
        board.stdout.readline()
        session = requests.Session()
        meta = session.get(f"{url}/api/meta", timeout=30).json()
        first, last = meta["first_day"], meta["last_day"]
        last_day = date.fromisoformat(last)
        fortnight = (last_day - timedelta(days=13)).isoformat()
        slots = len(session.get(f"{url}/api/sums?from={first}&to={last}", timeout=60).json())
        at = meta["newest_slot"].replace(" ", "T")
        print(
            f"\n{label}: {database.stat().st_size / 1e6:.1f} MB, {slots} slots, {first} .. {last}"
        )
        for name, path, times in (
            ("/api/sums 14 days", f"/api/sums?from={fortnight}&to={last}", 30),
            (f"/api/sums {slots} slots", f"/api/sums?from={first}&to={last}", 10),
            ("/api/slot", f"/api/slot?at={at}", 50),
            ("/api/latest", "/api/latest", 50),
            ("/api/day", f"/api/day?date={last}", 30),
            ("/api/meta", "/api/meta", 50),
        ):
            median, slowest, size = timed(session, f"{url}{path}", times)
            print(
                f"  {name:22s} {median:7.1f} ms median  {slowest:7.1f} ms slowest  "
                f"{size / 1e3:8.1f} kB"
            )
        if CHROMIUM is None:
            print("  (no chromium: the page is not measured)")
            return
        for name, view, count in (
            ("page: the newest day", f"from={last}&to={last}", 1),
            (f"page: all {slots} slots", f"from={first}&to={last}", slots),
        ):
            figures = render(url, view, count)
            print(
                f"  {name:22s} first render {figures['first render']:6.0f} ms   "
                f"zoom {figures['zoom']:5.0f} ms   pan {figures['pan']:5.0f} ms"
            )
    finally:
        board.terminate()
        board.wait()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--keep", type=Path, help="build (or reuse) the files in this folder")
    args = parser.parse_args()
    folder = args.keep or Path(tempfile.mkdtemp(prefix="coinsum-board-bench-"))
    folder.mkdir(parents=True, exist_ok=True)
    yesterday = clock.now().date() - timedelta(days=1)
    try:
        for label, days in (("60 days", 60), ("a year", 365)):
            database = folder / f"{days}d.duckdb"
            if not database.exists():
                seconds = build(database, yesterday - timedelta(days=days - 1), yesterday)
                print(f"built {database.name} in {seconds:.1f} s")
            measure(database, label)
    finally:
        if args.keep is None:
            shutil.rmtree(folder)


if __name__ == "__main__":
    main()
