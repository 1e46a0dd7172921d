"""The wall clock, read in one place.

Whatever depends on "now" (the slot the live schedule collects, how far back gap repair looks,
whether the newest slot is fresh, which days are "today" for a check, how far back OKX's
``candles`` endpoint reaches) asks here. Tests fix the time of the whole process (time-machine),
so no outcome depends on the hour a suite happens to run.
"""

from __future__ import annotations

from datetime import datetime

from coinsum_pipeline.core.slots import BEIJING, epoch_ms


def now() -> datetime:
    """Now, as an aware datetime in Beijing time."""
    return datetime.now(BEIJING)


def now_ms() -> int:
    """Now, in UTC epoch milliseconds (OKX's unit)."""
    return epoch_ms(now())
