"""What OKX tells coinsum about a coin, as plain data: its candles, its listing, or why it has
none. Shared by the OKX client, the fetching and the arithmetic, none of which needs to know
about the others' machinery."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from coinsum_pipeline.core.reasons import MissingReason


@dataclass(frozen=True)
class Candle:
    ts: int  # UTC epoch ms of the candle's open
    open: float
    confirmed: bool


@dataclass(frozen=True)
class Instrument:
    inst_id: str
    state: str
    list_time_ms: int | None


@dataclass(frozen=True)
class CoinFetch:
    """One coin's candles over a run, by ts, or the reason (a missing-value reason) it has none."""

    candles: Mapping[int, Candle] = field(default_factory=dict)
    list_time_ms: int | None = None
    failure: MissingReason | None = None
    detail: str = ""
