"""A stand-in for OKX's v5 public REST API: a real HTTP server on 127.0.0.1.

It speaks the real format (``{"code", "msg", "data"}`` envelopes, string numbers, newest-first
candle rows, exclusive ``after``/``before`` paging, page caps, the 1,440-bar reach of
``candles``, per-IP rate limits answered with 429/50011, 51001 for unknown instruments) and can
be told to misbehave the ways OKX and the proxies in front of it do.

Prices are synthetic but deterministic (a function of instrument and ts), so a test can compute
every expected number from what was served; ``replay_real()`` serves the real OKX candles in
``real_candles/`` beside this module instead for their instruments.

Product code, not a test helper: the tests, the benchmark and offline demos all run against it.
Run on its own: ``python -m coinsum_pipeline.okx.fake --port 18080``.
"""

from __future__ import annotations

import argparse
import json
import math
import random
import socket
import threading
import time
import zlib
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from coinsum_pipeline.core.basket import DEFAULT_COINS, swap_inst_id

CANDLES = "/api/v5/market/candles"
HISTORY_CANDLES = "/api/v5/market/history-candles"
INSTRUMENTS = "/api/v5/public/instruments"
TICKERS = "/api/v5/market/tickers"

MINUTE_MS = 60_000
BAR_MS = {"30m": 30 * MINUTE_MS, "1D": 24 * 60 * MINUTE_MS}
BEIJING_OFFSET_MS = 8 * 60 * MINUTE_MS  # 1D bars open at 00:00 UTC+8
CANDLES_REACH = 1440
LISTED_2019 = 1_573_557_408_000  # BTC-USDT-SWAP's real listTime, used as the default for all
OKX_RATE_LIMITS = {
    CANDLES: (40, 2.0),
    HISTORY_CANDLES: (20, 2.0),
    INSTRUMENTS: (20, 2.0),
    TICKERS: (20, 2.0),
}
# Real OKX candles, shipped with the stand-in (see its README.md).
REAL_DATA = Path(__file__).resolve().parent / "real_candles"

# kind -> (HTTP status, OKX code or None for a non-JSON body, message)
FAULTS: dict[str, tuple[int, str | None, str]] = {
    "429": (429, "50011", "Too Many Requests"),
    "50011": (200, "50011", "Rate limit reached."),
    "50013": (429, "50013", "Systems are busy. Please try again later."),
    "50001": (503, "50001", "Service temporarily unavailable. Please try again later."),
    "50004": (400, "50004", "API endpoint request timeout."),
    "50026": (500, "50026", "System error. Try again later."),
    "51000": (400, "51000", "Parameter instId error"),
    "html502": (502, None, "<html><title>502 Bad Gateway</title><body>nginx</body></html>"),
    "html200": (200, None, "<!DOCTYPE html><html><body>Site maintenance</body></html>"),
    # What a CDN or firewall in front of OKX answers a machine it refuses (a blocked region).
    "html403": (403, None, "<html><title>403 Forbidden</title><body>Access denied</body></html>"),
    "timeout": (0, None, "answer later than the client's timeout"),
    "drop": (0, None, "close the connection without answering"),
}
RETRYABLE_FAULTS = (
    "429",
    "50011",
    "50013",
    "50001",
    "50004",
    "50026",
    "html502",
    "html200",
    "timeout",
    "drop",
)


def synthetic_price(inst_id: str, ts_ms: int) -> str:
    """A deterministic, realistic-looking price string for an instrument at a moment."""
    seed = zlib.crc32(inst_id.encode())
    level = 10 ** ((seed % 600) / 100 - 1)
    hours = ts_ms / 3_600_000
    noise = (zlib.crc32(f"{inst_id}@{ts_ms}".encode()) / 2**32 - 0.5) * 0.012
    wave = 0.07 * math.sin(hours / 29 + seed) + 0.02 * math.sin(hours / 3.7 + seed % 97)
    value = level * (1 + wave + noise)
    decimals = max(0, 5 - math.floor(math.log10(value)))
    return f"{value:.{decimals}f}"


def _aligned(ts: int, bar: str) -> bool:
    offset = BEIJING_OFFSET_MS if bar == "1D" else 0
    return (ts + offset) % BAR_MS[bar] == 0


def _scaled(price: str, factor: float) -> str:
    decimals = len(price.partition(".")[2])
    return f"{float(price) * factor:.{decimals}f}"


def _floor_bar(ts: int, bar: str) -> int:
    offset = BEIJING_OFFSET_MS if bar == "1D" else 0
    return (ts + offset) // BAR_MS[bar] * BAR_MS[bar] - offset


@dataclass
class FakeOKX:
    """The server's behaviour; change fields while it runs to change what it does."""

    now_ms: int | None = None  # None: the real clock
    instruments: dict[str, int] = field(
        default_factory=lambda: {swap_inst_id(c): LISTED_2019 for c in DEFAULT_COINS}
    )
    page_caps: dict[str, int] = field(default_factory=lambda: {CANDLES: 300, HISTORY_CANDLES: 300})
    rate_limits: dict[str, tuple[int, float]] = field(default_factory=lambda: dict(OKX_RATE_LIMITS))
    gaps: dict[str, list[tuple[int, int]]] = field(default_factory=dict)
    # instId -> factor on its 1D opens (and sodUtc8): an OKX whose daily series disagrees
    daily_skew: dict[str, float] = field(default_factory=dict)
    # instId -> factor on its tickers' sodUtc8 alone
    sod_skew: dict[str, float] = field(default_factory=dict)
    # instId -> the fault every request about it gets: a coin OKX keeps failing for
    failing: dict[str, str] = field(default_factory=dict)
    # instId -> ms after each bar's start before its first trade: until then OKX has no candle
    # for the bar (an illiquid coin's slot, a moment after :00 or :30)
    first_trade_ms: dict[str, int] = field(default_factory=dict)
    fault_rate: float = 0.0
    fault_kinds: tuple[str, ...] = RETRYABLE_FAULTS
    slow_seconds: float = 1.5
    seed: int = 7

    def __post_init__(self) -> None:
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.arrivals: list[float] = []  # time.time() of each of ``requests``
        self.rate_limited = 0
        self.faults_served: list[str] = []
        self._scripted: deque[tuple[str, str | None]] = deque()
        self._arrivals: dict[str, deque[float]] = {}
        self._replay: dict[tuple[str, str], list[list[str]]] = {}
        self._rng = random.Random(self.seed)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # ---- control -------------------------------------------------------------------------

    def fail_next(self, kind: str, count: int = 1, path: str | None = None) -> None:
        """Answer the next ``count`` requests (to ``path``, or any) with fault ``kind``."""
        if kind not in FAULTS:
            raise ValueError(f"unknown fault {kind!r}; one of {sorted(FAULTS)}")
        with self._lock:
            self._scripted.extend([(kind, path)] * count)

    def list_swaps(self, total: int) -> list[str]:
        """List ``total`` USDT swaps: the default basket's, then made-up coins (``X001``, …),
        each trading like the others; returns their coins, a basket that large."""
        coins = [*DEFAULT_COINS, *(f"X{n:03d}" for n in range(1, total - len(DEFAULT_COINS) + 1))]
        for coin in coins[:total]:
            self.instruments.setdefault(swap_inst_id(coin), LISTED_2019)
        return coins[:total]

    def replay_real(self, folder: Path = REAL_DATA) -> list[str]:
        """Serve the real OKX candles in ``folder`` for their instruments; returns the instIds."""
        files = sorted(folder.glob("*.json"))
        if not files:
            raise FileNotFoundError(
                f"no real OKX candles in {folder}: expected the files of okx/real_candles there"
            )
        inst_ids = []
        for file in files:
            doc = json.loads(file.read_text())
            rows = [[*r[:7], f"{float(r[6]) * float(r[4]):.4f}", r[7]] for r in doc["rows"]]
            self._replay[(doc["instId"], doc["bar"])] = rows
            self.instruments.setdefault(doc["instId"], LISTED_2019)
            inst_ids.append(doc["instId"])
        return sorted(set(inst_ids))

    def request_count(self, path: str | None = None) -> int:
        with self._lock:
            return sum(1 for p, _ in self.requests if path is None or p == path)

    def forget_requests(self) -> None:
        """Drop the record of requests served so far, which tests read: a stand-in left
        running for days (the soak) would otherwise hold every request in memory."""
        with self._lock:
            self.requests.clear()
            self.arrivals.clear()

    def now(self) -> int:
        return self.now_ms if self.now_ms is not None else int(time.time() * 1000)

    # ---- market data ---------------------------------------------------------------------

    def candle_rows(self, path: str, params: dict[str, str]) -> list[list[str]]:
        """Rows newest first, strictly between ``before`` and ``after``, at most the page cap."""
        inst_id, bar = params.get("instId", ""), params.get("bar", "1m")
        cap = self.page_caps[path]
        limit = min(int(params.get("limit", "100")), cap)
        now = self.now()
        upper = min(int(params["after"]) - 1 if "after" in params else now, now)
        lower = int(params["before"]) + 1 if "before" in params else 0
        if path == CANDLES:
            lower = max(lower, _floor_bar(now, bar) - (CANDLES_REACH - 1) * BAR_MS[bar])
        if (inst_id, bar) in self._replay:
            rows = (r for r in self._replay[(inst_id, bar)] if lower <= int(r[0]) <= upper)
        else:
            lower = max(lower, _floor_bar(self.instruments[inst_id], bar))
            rows = self._synthetic_rows(inst_id, bar, lower, upper, now)
        page = [row for _, row in zip(range(limit), rows, strict=False)]
        if bar == "1D" and inst_id in self.daily_skew:
            page = [[r[0], _scaled(r[1], self.daily_skew[inst_id]), *r[2:]] for r in page]
        return page

    def ticker_rows(self) -> list[dict[str, str]]:
        """/market/tickers: ``sodUtc8`` is today's open at 00:00 UTC+8, the day's 1D open."""
        now = self.now()
        today = str(_floor_bar(now, "1D") + 1)
        rows = []
        for inst_id in sorted(self.instruments):
            last = self.candle_rows(CANDLES, {"instId": inst_id, "bar": "30m", "limit": "1"})
            day = self.candle_rows(
                CANDLES, {"instId": inst_id, "bar": "1D", "after": today, "limit": "1"}
            )
            if not last or not day:
                continue
            sod = _scaled(day[0][1], self.sod_skew.get(inst_id, 1.0))
            rows.append({"instType": "SWAP", "instId": inst_id, "last": last[0][4],
                         "open24h": day[0][1], "sodUtc8": sod, "sodUtc0": day[0][1],
                         "ts": str(now)})  # fmt: skip
        return rows

    def _synthetic_rows(
        self, inst_id: str, bar: str, lower: int, upper: int, now: int
    ) -> Iterator[list[str]]:
        step = BAR_MS[bar]
        ts = _floor_bar(upper, bar)
        gaps = self.gaps.get(inst_id, [])
        if now < ts + self.first_trade_ms.get(inst_id, 0):
            ts -= step  # the bar under way has had no trade yet
        while ts >= lower:
            if not any(a <= ts <= b for a, b in gaps):
                yield self.synthetic_candle(inst_id, bar, ts, now)
            ts -= step

    @staticmethod
    def synthetic_candle(inst_id: str, bar: str, ts: int, now: int) -> list[str]:
        close_ts = min(ts + BAR_MS[bar], now)
        o, c = synthetic_price(inst_id, ts), synthetic_price(inst_id, close_ts)
        decimals = len(o.partition(".")[2])
        high = f"{max(float(o), float(c)) * 1.003:.{decimals}f}"
        low = f"{min(float(o), float(c)) * 0.997:.{decimals}f}"
        vol = str(1000 + zlib.crc32(f"{inst_id}{ts}v".encode()) % 90000)
        confirm = "1" if ts + BAR_MS[bar] <= now else "0"
        return [str(ts), o, high, low, c, vol, vol, f"{float(vol) * float(c):.2f}", confirm]

    def instrument_rows(self, params: dict[str, str]) -> list[dict[str, str]]:
        wanted = params.get("instId")
        return [
            {
                "instId": inst_id,
                "instType": "SWAP",
                "instFamily": inst_id.removesuffix("-SWAP"),
                "settleCcy": "USDT",
                "ctVal": "0.01",
                "ctType": "linear",
                "state": "live",
                "listTime": str(listed),
                "tickSz": "0.0001",
                "lotSz": "1",
            }
            for inst_id, listed in sorted(self.instruments.items())
            if wanted is None or wanted == inst_id
        ]

    # ---- protocol ------------------------------------------------------------------------

    def _over_limit(self, path: str) -> bool:
        if path not in self.rate_limits:
            return False
        limit, window = self.rate_limits[path]
        now = time.monotonic()
        with self._lock:
            arrivals = self._arrivals.setdefault(path, deque())
            while arrivals and arrivals[0] <= now - window:
                arrivals.popleft()
            if len(arrivals) >= limit:
                self.rate_limited += 1
                return True
            arrivals.append(now)
            return False

    def _pick_fault(self, path: str, inst_id: str | None) -> str | None:
        with self._lock:
            if inst_id in self.failing:
                self.faults_served.append(self.failing[inst_id])
                return self.failing[inst_id]
            for i, (kind, only) in enumerate(self._scripted):
                if only is None or only == path:
                    del self._scripted[i]
                    self.faults_served.append(kind)
                    return kind
            if self.fault_rate and self._rng.random() < self.fault_rate:
                kind = self._rng.choice(self.fault_kinds)
                self.faults_served.append(kind)
                return kind
        return None

    def answer(self, path: str, params: dict[str, str]) -> tuple[int, str | None, object, str]:
        """(HTTP status, OKX code or None for a raw body, data or body, msg) for one request."""
        with self._lock:
            self.requests.append((path, params))
            self.arrivals.append(time.time())
        if self._over_limit(path):
            return 429, "50011", [], "Too Many Requests"
        fault = self._pick_fault(path, params.get("instId"))
        if fault and fault not in ("timeout", "drop"):
            status, code, msg = FAULTS[fault]
            return (status, code, [], msg) if code else (status, None, msg, "")
        if fault == "timeout":
            time.sleep(self.slow_seconds)
        if fault == "drop":
            return 0, None, "", ""
        return self._data(path, params)

    def _data(self, path: str, params: dict[str, str]) -> tuple[int, str | None, object, str]:
        if path in (CANDLES, HISTORY_CANDLES):
            inst_id, bar = params.get("instId"), params.get("bar", "1m")
            if not inst_id:
                return 400, "51000", [], "Parameter instId error"
            if bar not in BAR_MS:
                return 400, "51000", [], "Parameter bar error"
            if inst_id not in self.instruments:
                return 200, "51001", [], "Instrument ID or Spread ID doesn't exist."
            return 200, "0", self.candle_rows(path, params), ""
        if path == INSTRUMENTS:
            if params.get("instType") != "SWAP":
                return 400, "51000", [], "Parameter instType error"
            return 200, "0", self.instrument_rows(params), ""
        if path == TICKERS:
            if params.get("instType") != "SWAP":
                return 400, "51000", [], "Parameter instType error"
            return 200, "0", self.ticker_rows(), ""
        return 404, None, "<html><body>404 Not Found</body></html>", ""

    # ---- server --------------------------------------------------------------------------

    def start(self, port: int = 0) -> str:
        """Serve on 127.0.0.1 in a background thread; returns the base URL."""
        self._server = ThreadingHTTPServer(("127.0.0.1", port), _handler_for(self))
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self.url

    @property
    def url(self) -> str:
        assert self._server is not None, "call start() first"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def __enter__(self) -> FakeOKX:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _handler_for(okx: FakeOKX) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            url = urlparse(self.path)
            params = {k: v[-1] for k, v in parse_qs(url.query).items()}
            status, code, data, msg = okx.answer(url.path, params)
            try:
                self._reply(status, code, data, msg)
            except OSError:  # the client gave up first (its timeout): nothing to answer
                self.close_connection = True

        def _reply(self, status: int, code: str | None, data: object, msg: str) -> None:
            if status == 0:
                self.close_connection = True
                self.connection.shutdown(socket.SHUT_RDWR)
                return
            if code is None:
                body, kind = str(data).encode(), "text/html"
            else:
                body = json.dumps({"code": code, "msg": msg, "data": data}).encode()
                kind = "application/json"
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Handler


def _parse_now(text: str) -> int:
    return int(datetime.fromisoformat(text).timestamp() * 1000)


def main(argv: Iterable[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=18080)
    parser.add_argument(
        "--now",
        type=_parse_now,
        default=None,
        help="freeze the clock, e.g. 2026-01-17T00:00+08:00 (default: real time)",
    )
    parser.add_argument("--history-page-cap", type=int, default=300, choices=(100, 300))
    parser.add_argument(
        "--fault-rate",
        type=float,
        default=0.0,
        help="fraction of requests answered with a random transient fault",
    )
    parser.add_argument(
        "--swaps",
        type=int,
        default=len(DEFAULT_COINS),
        help="list this many USDT swaps: the default basket's, then X001, X002, … (for a larger "
        "COINSUM_COINS)",
    )
    parser.add_argument(
        "--replay-real",
        action="store_true",
        help=f"serve the real candles in {REAL_DATA} for their instruments",
    )
    args = parser.parse_args(list(argv) if argv is not None else None)
    okx = FakeOKX(now_ms=args.now, fault_rate=args.fault_rate)
    okx.page_caps[HISTORY_CANDLES] = args.history_page_cap
    okx.list_swaps(args.swaps)
    if args.replay_real:
        okx.replay_real()
    url = okx.start(args.port)
    print(f"fake OKX serving on {url}  (export OKX_BASE_URL={url})", flush=True)
    try:
        threading.Event().wait()
    except KeyboardInterrupt:
        okx.stop()


if __name__ == "__main__":
    main()
