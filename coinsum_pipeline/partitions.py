"""Slots of the Beijing day and the Dagster partitions that stand for them.

One partition per 30-minute slot in Asia/Shanghai, keyed ``YYYY-MM-DD-HH:MM`` in Beijing time,
so a partition key reads the way users talk about a slot. OKX 30m candles open at :00 and :30
UTC, which are also :00 and :30 in Beijing, so a slot's start is exactly its candle's ``ts``.
"""

from __future__ import annotations

from collections.abc import Iterator
from datetime import date, datetime, timedelta
from zoneinfo import ZoneInfo

from dagster import TimeWindowPartitionsDefinition

from coinsum_pipeline.settings import value

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


def start_date() -> date:
    """First Beijing day with partitions: ``COINSUM_START`` or 2026-01-03."""
    return parse_day(value("COINSUM_START"), "COINSUM_START")


def days_in(first: date, last: date) -> list[date]:
    """The Beijing days ``first``..``last``, inclusive; a reversed range is refused, saying so."""
    if last < first:
        raise DateError(f"--to {last} is before --from {first}: give the earlier date first.")
    return [first + timedelta(days=n) for n in range((last - first).days + 1)]


def day_start(day: date) -> datetime:
    """00:00 Beijing time of a calendar day, as an aware datetime."""
    return datetime(day.year, day.month, day.day, tzinfo=BEIJING)


def slot_partitions(first_day: date | None = None) -> TimeWindowPartitionsDefinition:
    """The slot partitions; ``end_offset=1`` makes the running slot a partition once it starts."""
    return TimeWindowPartitionsDefinition(
        cron_schedule="*/30 * * * *",
        timezone="Asia/Shanghai",
        start=day_start(first_day or start_date()).strftime(KEY_FORMAT),
        fmt=KEY_FORMAT,
        end_offset=1,
    )


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
