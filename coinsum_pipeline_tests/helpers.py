"""What the tests share: the pipeline under test, Beijing times, what the fake OKX served, and
readers for the files users open. Tests import from here, never from each other."""

from __future__ import annotations

import csv
import json
import math
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import date, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import urlsplit

import duckdb
import pytest
import requests
import time_machine
from dagster import DagsterInstance

from coinsum_pipeline.core.slots import BEIJING, day_start, epoch_ms
from coinsum_pipeline.instance.home import dagster_home
from coinsum_pipeline.okx.fake import FakeOKX


@dataclass
class Pipeline:
    """A pipeline wired to the fake OKX, with its own Dagster instance and DuckDB file."""

    okx: FakeOKX
    instance: DagsterInstance
    db: Path
    exports: Path
    printed: str = ""  # what a command run while setting it up printed

    def query(self, sql: str, params: list | None = None) -> list[tuple]:
        with duckdb.connect(str(self.db), read_only=True) as conn:
            return conn.execute(sql, params or []).fetchall()


def beijing(text: str) -> datetime:
    """'2026-01-05 13:00' in Beijing time."""
    return datetime.fromisoformat(text).replace(tzinfo=BEIJING)


def served_open(okx: FakeOKX, inst_id: str, ts: int) -> float:
    """The open OKX served for a 30m candle, asked of the fake the way the client asks."""
    rows = okx.candle_rows(
        "/api/v5/market/history-candles",
        {"instId": inst_id, "bar": "30m", "after": str(ts + 1), "before": str(ts - 1)},
    )
    assert len(rows) == 1 and int(rows[0][0]) == ts
    return float(rows[0][1])


def real_rows(inst_id: str, bar: str) -> dict[int, list[str]]:
    """The real OKX candles the stand-in replays, by ts."""
    from coinsum_pipeline.okx.fake import REAL_DATA

    doc = json.loads((REAL_DATA / f"{inst_id}_{bar}.json").read_text())
    return {int(row[0]): row for row in doc["rows"]}


def midnight_ms(day: date) -> int:
    return epoch_ms(day_start(day))


def assert_values_exact(pipeline: Pipeline) -> int:
    """Every stored value is the formula of docs/numbers.md over the candles served, and every
    sum adds them."""
    rows = pipeline.query(
        "SELECT slot_ts_ms, trade_date, inst_id, coin, base_price, price, pct_change "
        "FROM coin_prices"
    )
    by_slot: dict[int, list[float]] = defaultdict(list)
    for ts, day, inst_id, _coin, base, price, pct in rows:
        assert price == served_open(pipeline.okx, inst_id, ts)
        assert base == served_open(pipeline.okx, inst_id, midnight_ms(day))
        assert pct == (price - base) / base * 100
        by_slot[ts].append(pct)
    sums = pipeline.query("SELECT slot_ts_ms, sum_pct, coins_reported FROM coin_sum")
    for ts, total, reported in sums:
        assert reported == len(by_slot[ts])
        assert total == math.fsum(by_slot[ts])
    return len(rows)


def table_snapshot(pipeline: Pipeline) -> dict[str, list[tuple]]:
    return {
        "prices": pipeline.query(
            "SELECT slot_start, coin, base_price, price, pct_change FROM coin_prices ORDER BY 1, 2"
        ),
        "sums": pipeline.query(
            "SELECT slot_start, sum_pct, coins_reported, complete FROM coin_sum ORDER BY 1"
        ),
        "missing": pipeline.query(
            "SELECT slot_start, coin, reason FROM missing_values ORDER BY 1, 2"
        ),
    }


PNG = b"\x89PNG\r\n\x1a\n"

BOM = b"\xef\xbb\xbf"


def read_csv(path: Path) -> list[dict[str, str]]:
    """The rows of an export, after checking it starts with the BOM Excel needs."""
    assert path.read_bytes().startswith(BOM), f"{path} has no UTF-8 BOM"
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return list(csv.DictReader(handle))


def header(path: Path) -> list[str]:
    with path.open(encoding="utf-8-sig", newline="") as handle:
        return next(csv.reader(handle))


@contextmanager
def forwarding_proxy(target: str) -> Iterator[tuple[str, list[str]]]:
    """A plain HTTP proxy on loopback that sends every request it gets to ``target`` (whatever
    host it names) and answers with the reply: its URL, and the URLs it was asked for."""
    forwarded: list[str] = []
    direct = requests.Session()
    direct.trust_env = False  # the proxy itself must not go through the proxy variables

    class Proxy(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            forwarded.append(self.path)  # a proxy is asked for the absolute URL
            asked = urlsplit(self.path)
            reply = direct.get(f"{target}{asked.path}?{asked.query}", timeout=10)
            self.send_response(reply.status_code)
            self.send_header("Content-Type", reply.headers.get("Content-Type", "text/plain"))
            self.send_header("Content-Length", str(len(reply.content)))
            self.end_headers()
            self.wfile.write(reply.content)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Proxy)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", forwarded
    finally:
        server.shutdown()
        server.server_close()


@contextmanager
def serving_board(database: Path, colors: str = "cn") -> Iterator[str]:
    """The board over ``database``'s snapshot, served by uvicorn on a free loopback port in this
    process (so a test's fixed clock is the board's too): its URL."""
    import uvicorn

    from coinsum_pipeline.board.app import create_app

    app = create_app(str(database), colors, "http://127.0.0.1:3000")
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    while not server.started:
        assert thread.is_alive(), "the board did not start"
        time.sleep(0.02)
    port = server.servers[0].sockets[0].getsockname()[1]
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


@contextmanager
def market_at(now: datetime, home: Path, coins: Sequence[str]) -> Iterator[FakeOKX]:
    """A stand-in OKX and a pipeline's settings in ``home`` for ``coins``, the process's clock
    at ``now`` (ticking): for a module's fixture, which cannot use the per-test ones."""
    with (
        time_machine.travel(now, tick=True),
        pytest.MonkeyPatch.context() as env,
        FakeOKX() as okx,
    ):
        env.setenv("OKX_BASE_URL", okx.url)
        env.setenv("DAGSTER_HOME", str(home / "dagster_home"))
        env.setenv("COINSUM_DB", str(home / "coinsum.duckdb"))
        env.setenv("COINSUM_EXPORTS", str(home / "exports"))
        env.setenv("COINSUM_COINS", ",".join(coins))
        dagster_home()
        yield okx


def tree(pid: int) -> set[int]:
    """``pid`` and every process descended from it, now."""
    parents: dict[int, list[int]] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError):
                continue
            parents.setdefault(ppid, []).append(int(entry.name))
    found, todo = set(), [pid]
    while todo:
        current = todo.pop()
        found.add(current)
        todo.extend(parents.get(current, []))
    return found


def running(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


def wait_for(what: str, seconds: float, check: Callable[[], object]) -> None:
    """Until ``check()`` is true, looking every half second; fails past ``seconds``."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, f"{what}: not after {seconds} s"
        time.sleep(0.5)
