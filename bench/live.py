"""Live trial: production's services on the real clock against the stand-in OKX, waiting for
real ticks, printing for each slot how many seconds after its start it was whole and exact in
the readers' snapshot, its day's exports were written, and its alert arrived.

What runs is what production runs: ``coinsum serve code`` and ``coinsum serve daemon`` (no
``dagster dev``) on a new
instance (PostgreSQL through PgBouncer by default, as production; ``--storage sqlite`` for
SQLite files), with
the stand-in OKX in this process on the real clock, one coin's first trade in each slot coming
late (``--late TAO=4``: the live run waits for it), and a webhook receiver here that records
when each alert arrives (``COINSUM_ALERT_MOVE_PCT`` tiny, so every slot's move is an alert).
``COINSUM_START`` is today, so gap repair first fills today's slots so far; the trial then
waits for ``--ticks`` slots to start and be stored.

A slot is "whole" once ``coin_sum`` has it with every coin of the basket; "exact" when each
stored price and base is the open the stand-in served and each sum adds the changes exactly.
Exports count once the day's ``sum_*.csv`` has the slot's row. Seconds are from the slot's
start (:00 or :30 Beijing) to the first poll that saw it (polled every 0.2 s).

    .venv/bin/python bench/live.py                 # 4 ticks, about two hours
    .venv/bin/python bench/live.py --ticks 1 --storage sqlite
    .venv/bin/python bench/live.py --ticks 1 --coins 270   # a basket ten times larger
    .venv/bin/python bench/live.py --workers 1   # runs on a Celery worker (a Redis of its own)
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from postgres import drop_database, new_database

from coinsum_pipeline.core.basket import swap_inst_id
from coinsum_pipeline.core.slots import BEIJING, SLOT, current_slot, day_start, epoch_ms
from coinsum_pipeline.instance.pgbouncer import trial_pgbouncer
from coinsum_pipeline.instance.redis import trial_redis
from coinsum_pipeline.okx.fake import FakeOKX, synthetic_price
from coinsum_pipeline.warehouse.database import Snapshot, StorageError

ROOT = Path(__file__).resolve().parent.parent
POLL = 0.2


def receive_alerts() -> tuple[str, dict[str, float]]:
    """A webhook endpoint on loopback; returns its URL and {slot: arrival time} of the
    ``sum_moved`` alerts it received."""
    arrived: dict[str, float] = {}

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if body.get("kind") == "sum_moved":
                arrived.setdefault(body["slot"], time.time())
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return f"http://127.0.0.1:{server.server_port}/", arrived


def slot_whole_and_exact(snapshot: Snapshot, slot: datetime, coins: int) -> bool | None:
    """None while the slot is not whole in the snapshot; then whether every value is exact."""
    naive = slot.replace(tzinfo=None)
    try:
        with snapshot.cursor() as conn:
            row = conn.execute(
                "SELECT sum_pct, coins_reported FROM coin_sum WHERE slot_start = ?", [naive]
            ).fetchone()
            if row is None or row[1] < coins:
                return None
            prices = conn.execute(
                "SELECT inst_id, base_price, price, pct_change FROM coin_prices "
                "WHERE slot_start = ?",
                [naive],
            ).fetchall()
    except StorageError:
        return None
    midnight, ts = epoch_ms(day_start(slot.date())), epoch_ms(slot)
    exact = all(
        base == float(synthetic_price(inst_id, midnight))
        and price == float(synthetic_price(inst_id, ts))
        and pct == (price - base) / base * 100
        for inst_id, base, price, pct in prices
    )
    return exact and row[0] == math.fsum(p[3] for p in prices)


def exported(exports: Path, slot: datetime) -> bool:
    day = slot.date().isoformat()
    csv = exports / day / f"sum_{day}.csv"
    try:
        return f"{day},{slot:%H:%M}," in csv.read_text(encoding="utf-8-sig")
    except FileNotFoundError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--ticks", type=int, default=4)
    parser.add_argument("--storage", choices=("postgres", "sqlite"), default="postgres")
    parser.add_argument(
        "--coins", type=int, default=27, help="the basket's size: the 27, then made-up coins"
    )
    parser.add_argument(
        "--workers", type=int, default=0, help="run the runs on this many Celery workers"
    )
    parser.add_argument(
        "--late", default="TAO=4", help="COIN=SECONDS: that coin's first trade in each slot"
    )
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, lambda *_: sys.exit("stopped"))  # so the services stop too
    late_coin, late_seconds = args.late.split("=")

    work = Path(tempfile.mkdtemp(prefix="coinsum-live-"))
    okx = FakeOKX(first_trade_ms={swap_inst_id(late_coin): int(float(late_seconds) * 1000)})
    coins = okx.list_swaps(args.coins)
    webhook, alerted = receive_alerts()
    env = {
        **os.environ,
        "DAGSTER_HOME": str(work / "home"),
        "COINSUM_DB": str(work / "coinsum.duckdb"),
        "COINSUM_EXPORTS": str(work / "exports"),
        "OKX_BASE_URL": okx.start(),
        "COINSUM_START": datetime.now(BEIJING).date().isoformat(),
        "COINSUM_COINS": ",".join(coins),
        "COINSUM_ALERT_WEBHOOK": webhook,
        "COINSUM_ALERT_FORMAT": "json",
        "COINSUM_ALERT_MOVE_PCT": "0.000001",
    }
    database = None
    trials = contextlib.ExitStack()
    if args.storage == "postgres":
        database, direct = new_database("coinsum_live")
        env["COINSUM_PG_URL"], _ = trials.enter_context(trial_pgbouncer(direct))
    if args.workers:
        env["COINSUM_CELERY_BROKER"] = trials.enter_context(trial_redis())
    commands = [["serve", "code"], ["serve", "daemon"]]
    commands += [["serve", "worker", "--name", f"w{n}"] for n in range(1, args.workers + 1)]
    log = (work / "services.log").open("w")
    services = [
        subprocess.Popen(
            [str(ROOT / ".venv/bin/coinsum"), *command],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        for command in commands
    ]
    print(
        f"work folder {work}; services' log {log.name}; storage {args.storage}; "
        f"{args.workers or 'no'} Celery workers"
    )
    print(f"{len(coins)} coins; late coin {late_coin}: first trade {late_seconds} s into a slot")
    print(f"{'slot (Beijing)':<18}{'whole s':>9}{'exact':>7}{'exports s':>11}{'alert s':>9}")
    snapshot = Snapshot(work / "coinsum.duckdb")
    try:
        slot = current_slot(datetime.now(BEIJING)) + SLOT
        for _ in range(args.ticks):
            start = slot.timestamp()
            seen: dict[str, float] = {}
            exact = None
            deadline = start + 25 * 60
            while len(seen) < 3 and time.time() < deadline:
                if any(service.poll() is not None for service in services):
                    sys.exit(f"a service exited: see {log.name}")
                if "whole" not in seen and time.time() > start:
                    exact = slot_whole_and_exact(snapshot, slot, len(coins))
                    if exact is not None:
                        seen["whole"] = time.time()
                if "exports" not in seen and exported(work / "exports", slot):
                    seen["exports"] = time.time()
                when = slot.strftime("%Y-%m-%d %H:%M")
                if "alert" not in seen and when in alerted:
                    seen["alert"] = alerted[when]
                time.sleep(POLL)
            cells = [
                f"{seen[k] - start:.1f}" if k in seen else "never"
                for k in ("whole", "exports", "alert")
            ]
            print(
                f"{slot.strftime('%Y-%m-%d %H:%M'):<18}{cells[0]:>9}{exact!s:>7}"
                f"{cells[1]:>11}{cells[2]:>9}",
                flush=True,
            )
            slot += SLOT
    finally:
        for service in services:
            service.send_signal(signal.SIGTERM)
            service.wait()
        okx.stop()
        trials.close()
        if database:
            drop_database(database)


if __name__ == "__main__":
    main()
