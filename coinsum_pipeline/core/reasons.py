"""Why a (slot, coin) has no value: the missing-value reasons of docs/numbers.md, spelled in one
place.

Plain Python (no Dagster, no database), so the arithmetic, the storage, the views and gap repair
all agree on the same words.
"""

from __future__ import annotations

from enum import StrEnum


class MissingReason(StrEnum):
    NOT_LISTED = "not_listed"  # the slot is before the instrument's listTime
    NO_CANDLE = "no_candle"  # OKX has no candle at the slot (no trades, an outage, published late)
    NO_BASE = "no_base"  # the price exists, the day's 00:00 price does not
    FETCH_FAILED = "fetch_failed"  # OKX kept failing after every retry
    UNKNOWN_INSTRUMENT = "unknown_instrument"  # OKX says no such instrument (51001)


# What a later fetch can fill: OKX publishes a candle late, or answers next time.
FILLABLE = (MissingReason.NO_CANDLE, MissingReason.FETCH_FAILED)


def no_base_detail(base_reason: MissingReason) -> str:
    """The ``detail`` of a ``no_base`` value: why the day's 00:00 price is missing."""
    return f"00:00 price missing: {base_reason}"


def repairable_details() -> list[str]:
    """The ``no_base`` details a later fetch can fill (the 00:00 candle came late, or failed);
    a coin listed after 00:00 has no base that day, ever."""
    return [no_base_detail(reason) for reason in FILLABLE]
