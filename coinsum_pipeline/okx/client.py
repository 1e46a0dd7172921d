"""The OKX v5 REST client: public market data, paged, rate-limited and retried.

Written for the real OKX and nothing else in mind: the base URL is configuration so tests can
point it at a local stand-in, but no behaviour depends on which server answers.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from collections.abc import Mapping
from typing import Any

import requests
from urllib3.exceptions import MaxRetryError, NameResolutionError, NewConnectionError
from urllib3.util.retry import Retry

from coinsum_pipeline import clock
from coinsum_pipeline.core.market import Candle, Instrument
from coinsum_pipeline.okx.ahead import READ_AHEAD, Answer
from coinsum_pipeline.okx.ratelimit import shared_limiter

CANDLES = "/api/v5/market/candles"
HISTORY_CANDLES = "/api/v5/market/history-candles"
INSTRUMENTS = "/api/v5/public/instruments"
TICKERS = "/api/v5/market/tickers"

# OKX's published per-IP limits: (requests, seconds).
RATE_LIMITS: Mapping[str, tuple[int, float]] = {
    CANDLES: (40, 2.0),
    HISTORY_CANDLES: (20, 2.0),
    INSTRUMENTS: (20, 2.0),
    TICKERS: (20, 2.0),
}
PAGE_LIMIT = 300  # what we ask for; a server may cap lower (history-candles: 100 in older docs)
CANDLES_REACH = 1440  # `candles` serves only the latest 1,440 bars; older ones need history-candles
BAR_MS: Mapping[str, int] = {"30m": 30 * 60 * 1000, "1D": 24 * 3600 * 1000}

RETRYABLE_CODES = frozenset({"50011", "50013", "50001", "50004", "50026"})
UNKNOWN_INSTRUMENT = "51001"


class OKXError(Exception):
    """OKX answered, but not with data. ``code`` is OKX's own error code where it gave one."""

    def __init__(self, message: str, code: str = "", retryable: bool = False) -> None:
        super().__init__(message)
        self.code = code
        self.retryable = retryable


class UnknownInstrument(OKXError):
    """OKX says the instrument does not exist (51001): permanent for that symbol."""


class OKXUnavailable(OKXError):
    """OKX could not be reached, or kept failing, after every retry; a later run may succeed."""


class OKXUnreachable(OKXUnavailable):
    """No answer from OKX at all from this machine: its name does not resolve, the connection is
    refused or never made, TLS or the proxy fails, or something in between refuses this machine.
    Not a fault that minutes of retries mend: the message names the host, the cause and what to
    change."""


# How many times a request that cannot reach OKX at all is tried, this far apart, before the
# client says so: a blip passes within a second or two, a blocked host does not.
UNREACHABLE_TRIES = 3
UNREACHABLE_PAUSE = 0.5
# Answers that are not OKX's, from something between this machine and OKX that refuses it.
REFUSED_STATUSES = {401: "unauthorized", 403: "forbidden", 407: "proxy authentication required",
                    451: "unavailable for legal reasons"}  # fmt: skip
HOW_TO_REACH = (
    "Set OKX_BASE_URL to an OKX host this machine reaches (a regional OKX host, or "
    "http://127.0.0.1:PORT for the local stand-in), or send the requests through a proxy with "
    "HTTPS_PROXY=http://HOST:PORT (HTTP_PROXY for an http:// URL)."
)


def _unreachable_cause(exc: requests.RequestException, timeout: float) -> str | None:
    """Why ``exc`` means OKX cannot be reached at all, in a few words, or None for a fault a
    retry may mend (a dropped or slow answer)."""
    reason = getattr(exc.args[0] if exc.args else None, "reason", None)
    detail = str(reason or exc).splitlines()[0][:160]
    if isinstance(exc, requests.exceptions.ProxyError):
        return f"the proxy failed ({detail})"
    if isinstance(exc, requests.exceptions.SSLError):
        return f"TLS failed ({detail})"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return f"no connection within {timeout:g} s"
    if isinstance(reason, NameResolutionError):
        return f"the name {reason.conn.host} does not resolve"
    if isinstance(reason, NewConnectionError):
        refused = "Connection refused" in str(reason)
        return "the connection was refused" if refused else f"no connection ({detail})"
    return None


def _fault(response: requests.Response) -> tuple[list[Any] | None, OKXError | None]:
    """Split an answer into its data or the error it carries; never raises on odd bodies."""
    try:
        body = response.json()
        code = str(body["code"])
    except (ValueError, KeyError, TypeError):
        kind = response.headers.get("Content-Type", "unknown content")
        return None, OKXError(
            f"HTTP {response.status_code} with a body that is not an OKX envelope ({kind})",
            retryable=True,
        )
    if code == "0" and response.ok:
        return body.get("data") or [], None
    message = f"OKX error {code} (HTTP {response.status_code}): {body.get('msg', '')}"
    if code == UNKNOWN_INSTRUMENT:
        return None, UnknownInstrument(message, code)
    retryable = (
        code in RETRYABLE_CODES or response.status_code == 429 or response.status_code >= 500
    )
    return None, OKXError(message, code, retryable)


class OKXClient:
    """One pooled HTTP session, per-endpoint rate limits, and one retry budget per request.

    Retries use urllib3's ``Retry`` for the budget, exponential backoff, jitter and
    ``Retry-After``; transport errors and OKX's retryable envelope codes (which can arrive with
    HTTP 200 or 400) draw on the same budget, so a request never retries more than ``attempts``
    times whatever mix of faults it meets.
    """

    def __init__(
        self,
        base_url: str = "https://www.okx.com",
        timeout: float = 10.0,
        attempts: int = 6,
        backoff_factor: float = 0.5,
        backoff_max: float = 20.0,
        rate_limits: Mapping[str, tuple[int, float]] = RATE_LIMITS,
        reads_ahead: bool = False,
    ) -> None:
        """``reads_ahead``: a backfill's client for the next run, whose candles are kept in
        ``READ_AHEAD`` for the run's own client to take (see okx/ahead.py)."""
        if not base_url.startswith(("http://", "https://")):
            raise OKXError(
                f"OKX_BASE_URL {base_url!r} is not an http(s) URL: use https://www.okx.com, a "
                "regional OKX host, or http://127.0.0.1:PORT for the local stand-in."
            )
        self.base_url = base_url.rstrip("/")
        self.timeout = timeout
        self._retry = Retry(
            total=attempts - 1,
            backoff_factor=backoff_factor,
            backoff_max=backoff_max,
            backoff_jitter=backoff_factor,
            respect_retry_after_header=True,
        )
        self._limiters = {
            path: shared_limiter(self.base_url, path, n, s) for path, (n, s) in rate_limits.items()
        }
        self._session = requests.Session()
        adapter = requests.adapters.HTTPAdapter(pool_connections=4, pool_maxsize=32, max_retries=0)
        self._session.mount("http://", adapter)
        self._session.mount("https://", adapter)
        self._session.headers["Accept"] = "application/json"
        self._counts: Counter[str] = Counter()
        self._counts_lock = threading.Lock()
        self.reads_ahead = reads_ahead

    @property
    def requests_made(self) -> dict[str, int]:
        """Requests sent per endpoint, retries included: what a benchmark sets against the floor."""
        with self._counts_lock:
            return dict(self._counts)

    def close(self) -> None:
        self._session.close()

    def get(self, path: str, params: Mapping[str, str]) -> list[Any]:
        """GET an endpoint and return its ``data``, retrying what OKX documents as transient."""
        url = self.base_url + path
        retry = self._retry
        limiter = self._limiters.get(path)
        unreachable = 0
        while True:
            if limiter is not None:
                limiter.acquire()
            with self._counts_lock:
                self._counts[path] += 1
            response = None
            try:
                response = self._session.get(url, params=params, timeout=self.timeout)
                data, error = _fault(response)
            except (requests.ConnectionError, requests.Timeout) as exc:
                cause = _unreachable_cause(exc, self.timeout)
                if cause is not None:
                    unreachable += 1
                    if unreachable >= UNREACHABLE_TRIES:
                        raise self.unreachable(cause) from exc
                    time.sleep(UNREACHABLE_PAUSE)
                    continue
                data, error = None, OKXError(f"{type(exc).__name__}: {exc}", retryable=True)
            if error is None:
                return data
            if response is not None and response.status_code in REFUSED_STATUSES and not error.code:
                status = response.status_code
                raise self.unreachable(f"HTTP {status} {REFUSED_STATUSES[status]}, not from OKX")
            if not error.retryable:
                raise error
            try:
                retry = retry.increment(method="GET", url=url, error=error)
            except MaxRetryError:
                raise OKXUnavailable(
                    f"{path} {dict(params)} failed after {len(retry.history) + 1} attempts; "
                    f"last error: {error}",
                    error.code,
                ) from error
            retry.sleep(response)

    def unreachable(self, cause: str) -> OKXUnreachable:
        """The one line that says OKX cannot be reached from here, why, and what to change."""
        return OKXUnreachable(f"cannot reach OKX at {self.base_url}: {cause}. {HOW_TO_REACH}")

    def candles(self, inst_id: str, bar: str, first_ms: int, last_ms: int) -> list[Candle]:
        """Every candle with ``first_ms <= ts <= last_ms``, oldest first: read ahead by a
        backfill for this very request, or asked for now."""
        key = (self.base_url, inst_id, bar, first_ms, last_ms)
        if self.reads_ahead:
            promised = READ_AHEAD.promise(key)
            try:
                answer = Answer(*self._candles(inst_id, bar, first_ms, last_ms))
            except BaseException as exc:
                promised.set_exception(exc)
                raise
            promised.set_result(answer)
            return answer.candles
        ahead = READ_AHEAD.take(key)
        if ahead is None:
            return self._candles(inst_id, bar, first_ms, last_ms)[0]
        answer = ahead.result()
        with self._counts_lock:
            self._counts.update(answer.requests)
        return answer.candles

    def _candles(
        self, inst_id: str, bar: str, first_ms: int, last_ms: int
    ) -> tuple[list[Candle], Counter[str]]:
        """The candles, and the pages they took per endpoint.

        Pages backwards with ``after`` (exclusive) inside a ``before`` bound, deduplicating by
        ``ts`` because OKX's caches can overlap pages. Works whatever page size the server caps
        at. Uses ``candles`` while the page is within its 1,440-bar reach and ``history-candles``
        beyond it, falling back to history when ``candles`` comes back empty (a skewed clock).
        """
        bar_ms = BAR_MS[bar]
        reach_start = (clock.now_ms() // bar_ms - CANDLES_REACH + 2) * bar_ms
        rows: dict[int, Candle] = {}
        pages: Counter[str] = Counter()
        cursor = last_ms + 1
        while cursor > first_ms:
            recent = cursor - PAGE_LIMIT * bar_ms >= reach_start
            path = CANDLES if recent else HISTORY_CANDLES
            page = self.get(
                path,
                {
                    "instId": inst_id,
                    "bar": bar,
                    "after": str(cursor),
                    "before": str(first_ms - 1),
                    "limit": str(PAGE_LIMIT),
                },
            )
            pages[path] += 1
            if not page and path == CANDLES:
                reach_start = cursor + PAGE_LIMIT * bar_ms  # page with history from here on
                continue
            if not page:
                break
            oldest = cursor
            for row in page:
                ts = int(row[0])
                rows[ts] = Candle(ts=ts, open=float(row[1]), confirmed=row[-1] == "1")
                oldest = min(oldest, ts)
            if oldest >= cursor:
                raise OKXError(f"{path} paging for {inst_id} did not move past ts {cursor}")
            cursor = oldest
        return [rows[ts] for ts in sorted(rows) if first_ms <= ts <= last_ms], pages

    def sod_utc8(self) -> dict[str, float]:
        """Each swap's open at 00:00 UTC+8 today (ticker ``sodUtc8``): today's base, per OKX."""
        return {t["instId"]: float(t["sodUtc8"]) for t in self.get(TICKERS, {"instType": "SWAP"})}

    def swap_instruments(self) -> dict[str, Instrument]:
        """All USDT and other swaps OKX lists now, by instId, with their listing time."""
        return {
            item["instId"]: Instrument(
                inst_id=item["instId"],
                state=item.get("state", ""),
                list_time_ms=int(item["listTime"]) if item.get("listTime") else None,
            )
            for item in self.get(INSTRUMENTS, {"instType": "SWAP"})
        }
