"""Candles asked for ahead of the run that needs them, so a backfill's requests overlap the
previous run's bookkeeping instead of following it.

A backfill is OKX's rate limit plus Dagster's event writing, one after the other in each run.
``coinsum backfill`` knows its runs in advance: while one run writes its events, a background
thread makes the next run's candle requests through the same process-wide rate limiters, with
exactly the arguments the run will use. When the run asks, ``OKXClient.candles`` takes the
answer (waiting for it if it is still on its way) instead of asking again. Nothing is kept
past its one use, and nothing is read ahead outside a backfill, so a live run always asks OKX.
"""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import Future
from dataclasses import dataclass

from coinsum_pipeline.core.market import Candle

Key = tuple[str, str, str, int, int]  # base URL, instId, bar, first ms, last ms


@dataclass(frozen=True)
class Answer:
    candles: list[Candle]
    requests: Counter[str]  # what it took, per endpoint, for the asking client's counts


class ReadAhead:
    """Answers by request, each handed out once."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answers: dict[Key, Future[Answer]] = {}

    def promise(self, key: Key) -> Future[Answer]:
        """A place for an answer about to be fetched, which a run asking meanwhile waits for."""
        future: Future[Answer] = Future()
        with self._lock:
            self._answers[key] = future
        return future

    def take(self, key: Key) -> Future[Answer] | None:
        with self._lock:
            return self._answers.pop(key, None)

    def pending(self) -> int:
        """Answers read ahead and not yet taken."""
        with self._lock:
            return len(self._answers)

    def forget(self) -> None:
        """Drop what nobody asked for (a run that failed before asking, a basket that changed)."""
        with self._lock:
            self._answers.clear()


READ_AHEAD = ReadAhead()
