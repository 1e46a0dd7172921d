"""Fetching a basket's 30-minute candles for a run of slots.

Each coin is fetched once for the whole run, from 00:00 of the first day touched to the last
slot, so every slot's day base (the 00:00 candle) comes from the same answer as its price, and a
run never depends on rows another partition wrote. Coins are fetched concurrently; the client's
rate limiters keep the concurrency within OKX's budget.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import TypeVar

from coinsum_pipeline.core.basket import swap_inst_id
from coinsum_pipeline.core.market import CoinFetch
from coinsum_pipeline.core.reasons import MissingReason
from coinsum_pipeline.core.slots import SLOT_MS, day_start, epoch_ms
from coinsum_pipeline.okx.client import OKXClient, OKXError, OKXUnreachable, UnknownInstrument

UNKNOWN = MissingReason.UNKNOWN_INSTRUMENT

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
