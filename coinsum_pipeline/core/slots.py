"""Slots of the Beijing day: the 48 half hours, their keys and their OKX timestamps.

A slot is keyed ``YYYY-MM-DD-HH:MM`` in Beijing time, so a key (and the Dagster partition named
by it) reads the way users talk about a slot. OKX 30m candles open at :00 and :30 UTC, which
are also :00 and :30 in Beijing, so a slot's start is exactly its candle's ``ts``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

BEIJING = ZoneInfo("Asia/Shanghai")
SLOT = timedelta(minutes=30)
SLOTS_PER_DAY = 48
SLOT_MS = 30 * 60 * 1000
KEY_FORMAT = "%Y-%m-%d-%H:%M"


class DateError(ValueError):
    """A date a user gave that coinsum cannot use; the message says what to give instead."""


def parse_day(text: str, what: str = "date") -> date:
    """Parse a Beijing calendar date given as YYYY-MM-DD."""
    try:
        return date.fromisoformat(text.strip())
    except ValueError:
        raise DateError(
            f"{what} {text!r} is not a date: write it as YYYY-MM-DD, e.g. 2026-01-03."
        ) from None


def days_in(first: date, last: date) -> list[date]:
    """The Beijing days ``first``..``last``, inclusive; a reversed range is refused, saying so."""
    if last < first:
        raise DateError(f"the last day {last} is before the first day {first}.")
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def day_start(day: date) -> datetime:
    """00:00 Beijing time of a calendar day, as an aware datetime."""
    return datetime(day.year, day.month, day.day, tzinfo=BEIJING)


def slot_key(slot: datetime) -> str:
    return slot.astimezone(BEIJING).strftime(KEY_FORMAT)


def slot_of_key(key: str) -> datetime:
    return datetime.strptime(key, KEY_FORMAT).replace(tzinfo=BEIJING)


def epoch_ms(moment: datetime) -> int:
    """UTC epoch milliseconds: the OKX candle ``ts`` of the slot starting at ``moment``."""
    return int(moment.timestamp()) * 1000


def slots_in(start: datetime, end: datetime) -> Iterator[datetime]:
    """Slot starts in the half-open window [start, end), in Beijing time."""
    slot = start.astimezone(BEIJING)
    while slot < end:
        yield slot
        slot += SLOT


def current_slot(now: datetime) -> datetime:
    """The slot that contains ``now``."""
    local = now.astimezone(BEIJING)
    return local.replace(minute=local.minute - local.minute % 30, second=0, microsecond=0)


def slots_due(day: date, now: datetime) -> int:
    """How many of ``day``'s slots have started by ``now``: 48 for a past day, the slots so far
    for today, 0 for a day to come."""
    started = (current_slot(now) - day_start(day)) // SLOT + 1
    return max(0, min(SLOTS_PER_DAY, started))
