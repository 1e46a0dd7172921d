"""The basket of coins coinsum tracks, and how a coin maps to its OKX instrument.

The basket is configuration (``COINSUM_COINS``), not code: SPEC lets users track other or
more coins, so everything downstream takes the basket as a parameter.
"""

from __future__ import annotations

import re

from dagster import ConfigurableResource

DEFAULT_COINS: tuple[str, ...] = tuple(
    """BTC ETH XRP BNB SOL LTC DOGE SUI TRX TON ETC BCH HBAR XLM FIL LINK
       CRO DOT UNI NEAR APT CFX CRV STX LDO TAO AAVE""".split()
)

SWAP_SUFFIX = "-USDT-SWAP"
_SYMBOL = re.compile(r"^[A-Z0-9]{1,20}$")


class BasketError(ValueError):
    """A basket that cannot be tracked as given; the message says how to fix it."""


def parse_basket(text: str | None) -> tuple[str, ...]:
    """Read a comma list such as ``BTC,eth, SOL-USDT-SWAP`` into upper-case base symbols.

    An empty value means the default 27 coins. Malformed symbols are rejected here, before any
    request, so a typo never turns into a silently shorter basket.
    """
    if text is None or not text.strip():
        return DEFAULT_COINS
    coins: list[str] = []
    bad: list[str] = []
    for raw in text.split(","):
        symbol = raw.strip().upper().removesuffix(SWAP_SUFFIX)
        if not symbol:
            continue
        if not _SYMBOL.match(symbol):
            bad.append(raw.strip())
        elif symbol not in coins:
            coins.append(symbol)
    if bad:
        raise BasketError(
            f"COINSUM_COINS has malformed coin symbols {bad}: give a comma-separated list of OKX "
            "base symbols such as 'BTC,ETH,SOL' (letters and digits only)."
        )
    if not coins:
        raise BasketError("COINSUM_COINS names no coins: leave it unset for the default 27.")
    return tuple(coins)


def swap_inst_id(coin: str) -> str:
    """The OKX USDT-margined perpetual swap for a base symbol, e.g. BTC -> BTC-USDT-SWAP."""
    return f"{coin}{SWAP_SUFFIX}"


class BasketResource(ConfigurableResource):
    """The coins to track, from ``COINSUM_COINS`` (a comma list; default SPEC's 27)."""

    coins: str

    def symbols(self) -> tuple[str, ...]:
        return parse_basket(self.coins)
