"""The basket of coins coinsum tracks, how a coin maps to its OKX instrument, and how the basket
changes over time.

The basket is configuration, not code: the rules let users track other or more coins. But a stored
day must never change meaning, so the database remembers its basket by Beijing day (the
``baskets`` table): each run takes every day's coins from there, and a different basket is a
change the user records (``coinsum basket --set``), from a day on, never a side effect of one
run's ``COINSUM_COINS``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import date

DEFAULT_COINS: tuple[str, ...] = tuple(
    """BTC ETH XRP BNB SOL LTC DOGE SUI TRX TON ETC BCH HBAR XLM FIL LINK
       CRO DOT UNI NEAR APT CFX CRV STX LDO TAO AAVE""".split()
)

SWAP_SUFFIX = "-USDT-SWAP"
_SYMBOL = re.compile(r"^[A-Z0-9]{1,20}$")


class BasketError(ValueError):
    """A basket that cannot be tracked as given; the message says how to fix it."""


def parse_basket(text: str | None, source: str = "COINSUM_COINS") -> tuple[str, ...]:
    """Read a comma list such as ``BTC,eth, SOL-USDT-SWAP`` into upper-case base symbols.

    An empty value means the default 27 coins. Malformed symbols are rejected here, before any
    request, so a typo never turns into a silently shorter basket; the message names ``source``,
    where the user typed it.
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
        hint = (
            " coinsum tracks each coin's {COIN}-USDT-SWAP, so write BTC or BTC-USDT-SWAP, not "
            "another instrument id."
            if any("-" in b for b in bad)
            else ""
        )
        raise BasketError(
            f"{source} has malformed coin symbols {bad}: give a comma-separated list of OKX "
            f"base symbols such as 'BTC,ETH,SOL' (letters and digits only).{hint}"
        )
    if not coins:
        raise BasketError(f"{source} names no coins: give at least one, e.g. 'BTC,ETH,SOL'.")
    return tuple(coins)


def swap_inst_id(coin: str) -> str:
    """The OKX USDT-margined perpetual swap for a base symbol, e.g. BTC -> BTC-USDT-SWAP."""
    return f"{coin}{SWAP_SUFFIX}"


def basket_text(coins: Sequence[str]) -> str:
    """How a basket is stored and shown: ``BTC,ETH,SOL``."""
    return ",".join(coins)


def ordered_union(baskets: Iterable[Sequence[str]]) -> tuple[str, ...]:
    """Every coin of ``baskets``, each once, in the order it first appears."""
    return tuple(dict.fromkeys(coin for coins in baskets for coin in coins))


@dataclass(frozen=True)
class BasketHistory:
    """The basket in force from each Beijing day on (oldest first), as the database records it.

    The first basket applies to every day before the next change, however early.
    """

    changes: tuple[tuple[date, tuple[str, ...]], ...] = ()

    def on(self, day: date) -> tuple[str, ...]:
        """The coins of ``day``'s slots."""
        coins = self.changes[0][1]
        for since, basket in self.changes:
            if since <= day:
                coins = basket
        return coins

    @property
    def current(self) -> tuple[str, ...]:
        """The basket in force from the newest change on: the one new days get."""
        return self.changes[-1][1]

    def coins_of(self, days: Iterable[date]) -> tuple[str, ...]:
        """Every coin some of ``days`` has, in basket order."""
        return ordered_union(self.on(day) for day in sorted(set(days)))

    def all_coins(self) -> tuple[str, ...]:
        """Every coin any basket ever had: the columns of the ``day_table`` view."""
        return ordered_union(coins for _, coins in self.changes)


class BasketMismatch(BasketError):
    """``COINSUM_COINS`` names a basket the database is not tracking: refused, not applied."""


def check_requested(history: BasketHistory, requested: tuple[str, ...] | None) -> None:
    """Refuse a ``COINSUM_COINS`` that differs from the database's current basket, saying how
    to record a change instead; an unset one follows the database."""
    if requested is None or requested == history.current:
        return
    since = history.changes[-1][0]
    raise BasketMismatch(
        f"COINSUM_COINS names {len(requested)} coins ({basket_text(requested)}), but this "
        f"database tracks {len(history.current)} ({basket_text(history.current)}) from "
        f"{since} on, and stored days keep the basket they were collected with. To track the "
        f"new basket from a day on, record the change: coinsum basket --set "
        f"{basket_text(requested)} --from YYYY-MM-DD. Otherwise unset COINSUM_COINS (the "
        "database's basket is then used) or set it to the database's basket."
    )
