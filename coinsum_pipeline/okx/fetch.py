"""Fetching a basket's 30-minute candles for a run of slots.

Each coin is fetched once for the whole run, from 00:00 of the first day touched to the last
slot, so every slot's day base (the 00:00 candle) comes from the same answer as its price, and a
run never depends on rows another partition wrote. Coins are fetched concurrently; the client's
rate limiters keep the concurrency within OKX's budget.

A live run starts a few seconds into its slot. OKX opens a slot's candle at the coin's first
trade in it, so a coin that has not traded yet has no candle: rather than store ``no_candle``
and leave the slot to gap repair ten minutes later, the run asks again each second until
``FIRST_TRADE_WAIT`` after the slot's start. The basket's coins trade several times a second;
one still without a trade 20 s in is halted or nearly so, and waiting longer would hold the
other coins of the slot off the board for it. A backfill's slots are long past the bound: it
never waits.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import date, datetime, timedelta
from typing import TypeVar

from coinsum_pipeline import clock
from coinsum_pipeline.core.basket import swap_inst_id
from coinsum_pipeline.core.market import Candle, CoinFetch
from coinsum_pipeline.core.reasons import MissingReason
from coinsum_pipeline.core.slots import BEIJING, SLOT_MS, day_start, epoch_ms
from coinsum_pipeline.okx.client import OKXClient, OKXError, OKXUnreachable, UnknownInstrument

UNKNOWN = MissingReason.UNKNOWN_INSTRUMENT
FIRST_TRADE_WAIT = timedelta(seconds=20)
ASK_AGAIN_SECONDS = 1.0

log = logging.getLogger(__name__)

T = TypeVar("T")


def fetch_basket(
    client: OKXClient, coins: Sequence[str], slots: Sequence[datetime], threads: int = 8
) -> dict[str, CoinFetch]:
    """Candles for every coin of the basket covering ``slots`` and their days' 00:00 bases.

    Raises ``OKXUnreachable`` when OKX cannot be reached at all (its first request, or every
    coin): then nothing is worth storing, and the run says so at once.
    """
    first_ms = epoch_ms(day_start(slots[0].date()))
    last_ms = epoch_ms(slots[-1])
    # None when OKX cannot list its swaps: then 51001 on the candles call tells unknown symbols.
    listed = _optional(client.swap_instruments, "the list of swaps (listing times)")
    unreachable: list[OKXUnreachable] = []

    def one(coin: str) -> CoinFetch:
        inst_id = swap_inst_id(coin)
        instrument = listed.get(inst_id) if listed is not None else None
        if listed is not None and instrument is None:
            return CoinFetch(failure=UNKNOWN, detail=f"{inst_id} is not a live OKX swap")
        list_time = instrument.list_time_ms if instrument else None
        # The slot holding listTime can have a candle: its first trade. Start there, not later.
        listed_slot = (list_time or 0) // SLOT_MS * SLOT_MS
        try:
            candles = client.candles(inst_id, "30m", max(first_ms, listed_slot), last_ms)
            if listed_slot <= last_ms and (not candles or candles[-1].ts != last_ms):
                candles = [*candles, *_first_trade(client, inst_id, last_ms)]
        except UnknownInstrument as exc:
            return CoinFetch(failure=UNKNOWN, detail=str(exc))
        except OKXError as exc:
            if isinstance(exc, OKXUnreachable):
                unreachable.append(exc)
            log.warning("fetching %s failed: %s", inst_id, exc)
            return CoinFetch(
                list_time_ms=list_time, failure=MissingReason.FETCH_FAILED, detail=str(exc)
            )
        return CoinFetch(candles={c.ts: c for c in candles}, list_time_ms=list_time)

    with ThreadPoolExecutor(max_workers=max(1, min(threads, len(coins)))) as pool:
        fetched = dict(zip(coins, pool.map(one, coins), strict=True))
    if unreachable and len(unreachable) == len(coins):
        raise unreachable[0]
    return fetched


def _first_trade(client: OKXClient, inst_id: str, slot_ms: int) -> list[Candle]:
    """The candle of the slot starting at ``slot_ms``, asked for again each second while that
    slot is younger than ``FIRST_TRADE_WAIT``; empty if it does not come by then, or OKX fails
    meanwhile (the candles already fetched are kept, and gap repair asks for this one later)."""
    give_up = slot_ms + FIRST_TRADE_WAIT.total_seconds() * 1000
    while clock.now_ms() < give_up:
        time.sleep(ASK_AGAIN_SECONDS)
        try:
            candles = client.candles(inst_id, "30m", slot_ms, slot_ms)
        except OKXError as exc:
            log.warning("asking again for %s's newest candle failed: %s", inst_id, exc)
            return []
        if candles:
            log.info("%s traded %.1f s into its slot", inst_id, (clock.now_ms() - slot_ms) / 1000)
            return candles
    return []


def _optional(fetch: Callable[[], T], what: str) -> T | None:
    """Data that improves a run but must not fail it: None, with a warning, if OKX won't give it
    (but OKX unreachable fails it: nothing else would come either)."""
    try:
        return fetch()
    except OKXUnreachable:
        raise
    except OKXError as exc:
        log.warning("could not fetch %s from OKX (%s); going on without it", what, exc)
        return None


def daily_opens(
    client: OKXClient, coins: Sequence[str], days: Sequence[date]
) -> dict[date, dict[str, float]]:
    """OKX's own 1D opens for ``days`` by day and coin, which the base check compares with the
    stored bases; a coin OKX won't give is left out (its bases stay unverified)."""
    first, last = epoch_ms(day_start(days[0])), epoch_ms(day_start(days[-1]))
    opens: dict[date, dict[str, float]] = defaultdict(dict)
    for coin in coins:
        try:
            candles = client.candles(swap_inst_id(coin), "1D", first, last)
        except OKXError:
            continue
        for candle in candles:
            opens[datetime.fromtimestamp(candle.ts / 1000, BEIJING).date()][coin] = candle.open
    return opens
