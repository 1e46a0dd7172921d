"""The OKX client against a real HTTP server speaking OKX's v5 format."""

from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor
from datetime import date, timedelta

import pytest

from coinsum_pipeline.core.slots import SLOT_MS
from coinsum_pipeline.okx.client import (
    CANDLES,
    HISTORY_CANDLES,
    UNREACHABLE_TRIES,
    OKXClient,
    OKXError,
    OKXUnavailable,
    OKXUnreachable,
    UnknownInstrument,
)
from coinsum_pipeline.okx.fake import RETRYABLE_FAULTS, FakeOKX
from coinsum_pipeline_tests.helpers import forwarding_proxy, midnight_ms

BTC = "BTC-USDT-SWAP"
FIRST = midnight_ms(date(2026, 1, 3))
LAST = midnight_ms(date(2026, 1, 17)) - SLOT_MS  # 2026-01-16 23:30 Beijing: 672 slots


def fast_client(okx: FakeOKX, **kwargs: float) -> OKXClient:
    return OKXClient(okx.url, **{"timeout": 0.5, "backoff_factor": 0.01, **kwargs})


@pytest.mark.parametrize(("cap", "pages"), [(300, 3), (100, 7)])
def test_pages_backwards_across_page_boundaries(fake_okx: FakeOKX, cap: int, pages: int) -> None:
    fake_okx.page_caps[HISTORY_CANDLES] = cap
    client = fast_client(fake_okx)
    candles = client.candles(BTC, "30m", FIRST, LAST)
    assert [c.ts for c in candles] == list(range(FIRST, LAST + 1, SLOT_MS))
    assert client.requests_made == {HISTORY_CANDLES: pages}
    afters = [int(p["after"]) for _, p in fake_okx.requests]
    assert afters == sorted(afters, reverse=True), "each page must continue below the last one"


def test_uses_candles_within_reach_and_history_beyond(fake_okx: FakeOKX) -> None:
    client = fast_client(fake_okx)
    now = int(time.time() * 1000) // SLOT_MS * SLOT_MS
    recent = client.candles(BTC, "30m", now - 100 * SLOT_MS, now)
    assert len(recent) == 101 and client.requests_made == {CANDLES: 1}
    old = client.candles(BTC, "30m", now - 2000 * SLOT_MS, now - 1900 * SLOT_MS)
    assert len(old) == 101 and client.requests_made == {CANDLES: 1, HISTORY_CANDLES: 1}


def test_falls_back_to_history_when_candles_is_out_of_reach(fake_okx: FakeOKX) -> None:
    # The server's clock is 40 days ahead of ours: what we think is recent, it has aged out.
    fake_okx.now_ms = int(time.time() * 1000) + 40 * 86_400_000
    client = fast_client(fake_okx)
    now = int(time.time() * 1000) // SLOT_MS * SLOT_MS
    candles = client.candles(BTC, "30m", now - 100 * SLOT_MS, now)
    assert len(candles) == 101
    assert [p for p, _ in fake_okx.requests] == [CANDLES, HISTORY_CANDLES]


def test_prices_are_the_served_strings(fake_okx: FakeOKX) -> None:
    candles = fast_client(fake_okx).candles(BTC, "30m", FIRST, FIRST + 3 * SLOT_MS)
    served = fake_okx.candle_rows(
        HISTORY_CANDLES, {"instId": BTC, "bar": "30m", "after": str(FIRST + 4 * SLOT_MS)}
    )
    assert [c.open for c in candles] == [float(r[1]) for r in reversed(served[:4])]
    assert all(c.confirmed for c in candles)


@pytest.mark.parametrize("fault", RETRYABLE_FAULTS)
def test_retries_every_retryable_fault(fake_okx: FakeOKX, fault: str) -> None:
    fake_okx.fail_next(fault, count=2)
    fake_okx.slow_seconds = 1.0
    client = fast_client(fake_okx)
    candles = client.candles(BTC, "30m", FIRST, LAST)
    assert len(candles) == 672
    assert fake_okx.faults_served == [fault, fault]
    assert client.requests_made == {HISTORY_CANDLES: 3 + 2}


def test_gives_up_after_the_retry_budget(fake_okx: FakeOKX) -> None:
    fake_okx.fail_next("50001", count=100)
    client = fast_client(fake_okx, attempts=4)
    with pytest.raises(OKXUnavailable, match=r"failed after 4 attempts.*50001"):
        client.candles(BTC, "30m", FIRST, LAST)
    assert client.requests_made == {HISTORY_CANDLES: 4}


def test_no_retry_on_unknown_instrument(fake_okx: FakeOKX) -> None:
    client = fast_client(fake_okx)
    with pytest.raises(UnknownInstrument, match="51001"):
        client.candles("NOPE-USDT-SWAP", "30m", FIRST, LAST)
    assert client.requests_made == {HISTORY_CANDLES: 1}


def test_no_retry_on_parameter_error(fake_okx: FakeOKX) -> None:
    fake_okx.fail_next("51000")
    client = fast_client(fake_okx)
    with pytest.raises(OKXError, match="51000") as raised:
        client.candles(BTC, "30m", FIRST, LAST)
    assert not isinstance(raised.value, OKXUnavailable)
    assert client.requests_made == {HISTORY_CANDLES: 1}


def test_requests_are_paced_under_okx_limits(fake_okx: FakeOKX) -> None:
    """60 history pages from 8 threads at once: the client paces itself under 20 per 2 s. (A
    timeout long enough for a loaded CI machine: a request retried after a timeout would count.)"""
    client = fast_client(fake_okx, timeout=10)
    days = [date(2026, 1, 3) + timedelta(days=i) for i in range(60)]
    with ThreadPoolExecutor(8) as pool:
        got = list(
            pool.map(
                lambda d: client.candles(BTC, "30m", midnight_ms(d), midnight_ms(d) + 47 * SLOT_MS),
                days,
            )
        )
    assert all(len(day) == 48 for day in got)
    # OKX counts arrivals: on a loaded machine (CI's two cores running five tests), scheduling
    # can still bunch some of them past the margin the limiter keeps (5 of 60 seen there), and
    # each such 429 is retried. Unpaced, the 8 threads meet so many that requests run out of
    # retries.
    assert fake_okx.rate_limited <= 12
    assert fake_okx.request_count() == 60 + fake_okx.rate_limited


@pytest.mark.slow
def test_a_storm_of_429s_is_survived(fake_okx: FakeOKX) -> None:
    """A server stricter than OKX's published limit: 429s come, retries absorb them."""
    fake_okx.rate_limits[HISTORY_CANDLES] = (3, 1.0)
    client = fast_client(fake_okx, backoff_factor=0.2, attempts=10)
    with ThreadPoolExecutor(4) as pool:
        got = list(pool.map(lambda _: client.candles(BTC, "30m", FIRST, LAST), range(4)))
    assert all(len(candles) == 672 for candles in got)
    assert fake_okx.rate_limited > 0


def test_lists_swaps_with_listing_times(fake_okx: FakeOKX) -> None:
    fake_okx.instruments["NEW-USDT-SWAP"] = FIRST + 10 * SLOT_MS
    listed = fast_client(fake_okx).swap_instruments()
    assert len(listed) == 28
    assert listed["NEW-USDT-SWAP"].list_time_ms == FIRST + 10 * SLOT_MS


@pytest.mark.parametrize(
    ("base_url", "cause"),
    [
        ("http://okx.invalid", "the name okx.invalid does not resolve"),
        ("http://127.0.0.1:9", "the connection was refused"),
    ],
)
def test_an_okx_it_cannot_reach_is_one_line_at_once(base_url: str, cause: str) -> None:
    client = OKXClient(base_url, timeout=2)
    with pytest.raises(OKXUnreachable) as raised:
        client.swap_instruments()
    message = str(raised.value)
    assert message.startswith(f"cannot reach OKX at {base_url}: {cause}. Set OKX_BASE_URL")
    assert "HTTPS_PROXY" in message and "\n" not in message
    assert client.requests_made == {"/api/v5/public/instruments": UNREACHABLE_TRIES}


def test_a_machine_refused_in_front_of_okx_is_unreachable_not_retried(fake_okx: FakeOKX) -> None:
    fake_okx.fail_next("html403")
    client = fast_client(fake_okx)
    with pytest.raises(OKXUnreachable, match="HTTP 403 forbidden, not from OKX"):
        client.swap_instruments()
    assert fake_okx.request_count() == 1


def test_requests_go_through_the_proxy_in_the_standard_variables(
    fake_okx: FakeOKX, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where OKX's own name is blocked: the proxy named by HTTP(S)_PROXY reaches it."""
    with forwarding_proxy(fake_okx.url) as (proxy, forwarded):
        monkeypatch.setenv("HTTP_PROXY", proxy)
        monkeypatch.delenv("NO_PROXY", raising=False)
        monkeypatch.delenv("no_proxy", raising=False)
        listed = OKXClient("http://okx.invalid", timeout=2).swap_instruments()
    assert len(listed) == 27
    assert forwarded == ["http://okx.invalid/api/v5/public/instruments?instType=SWAP"]
