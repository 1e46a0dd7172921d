"""What is worth a message to the users: the rules of the alerts, as plain Python.

Four kinds, each about one slot and so with a key that names it once and for all (a crossing is
alerted once, however many times the sensor looks):

- ``sum_crossed``: the basket sum went across a level (``COINSUM_ALERT_LEVELS``, e.g. 20 and
  -20) between two slots of the same day; every day starts at 0, so 00:00 never "crosses".
- ``sum_moved``: the sum changed by more than ``COINSUM_ALERT_MOVE_PCT`` points within a slot.
- ``slot_incomplete``: a new slot has fewer coins than its basket.
- ``slot_late``: the slot due by now is not stored.

Texts are Chinese, for the users, and start with "coinsum" (a DingTalk robot's keyword).
"""
# The full-width punctuation of Chinese is what these texts are written in, not a look-alike.
# ruff: noqa: RUF001

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class SlotSum:
    """A stored slot as the alerts see it (naive Beijing ``slot_start``)."""

    slot_start: datetime
    sum_pct: float | None
    coins_reported: int
    coins_expected: int


@dataclass(frozen=True)
class Alert:
    key: str  # unique per event: the sensor's run key
    kind: str
    slot: str  # YYYY-MM-DD HH:MM, Beijing
    text: str
    facts: dict[str, float | int | str]


def _when(slot: datetime) -> str:
    return slot.strftime("%Y-%m-%d %H:%M")


def sum_alerts(
    new: Sequence[SlotSum], previous: SlotSum | None, levels: Sequence[float], move: float
) -> list[Alert]:
    """The crossings, big moves and incomplete slots among ``new`` (oldest first), each compared
    with the slot before it (``previous`` for the first). ``move`` 0: no move alerts."""
    alerts: list[Alert] = []
    for slot in new:
        when = _when(slot.slot_start)
        if slot.coins_reported < slot.coins_expected:
            alerts.append(
                Alert(
                    f"slot_incomplete:{when}",
                    "slot_incomplete",
                    when,
                    f"coinsum: {when} 只有 {slot.coins_reported}/{slot.coins_expected} 个币有数据"
                    "（缺失原因见 missing_values）",
                    {"coins_reported": slot.coins_reported, "coins_expected": slot.coins_expected},
                )
            )
        before = previous
        previous = slot
        same_day = before is not None and before.slot_start.date() == slot.slot_start.date()
        if not same_day or before.sum_pct is None or slot.sum_pct is None:
            continue
        was, now = before.sum_pct, slot.sum_pct
        for level in levels:
            if (was < level) != (now < level):
                direction = "up" if now >= level else "down"
                alerts.append(
                    Alert(
                        f"sum_crossed:{level:+g}:{direction}:{when}",
                        "sum_crossed",
                        when,
                        f"coinsum: 27币涨跌幅总和{'上穿' if direction == 'up' else '下穿'} "
                        f"{level:+g}%：{now:+.2f}%（{when} 北京时间，上一时段 {was:+.2f}%）",
                        {"level": level, "direction": direction, "sum_pct": now, "previous": was},
                    )
                )
        if move and abs(now - was) > move:
            alerts.append(
                Alert(
                    f"sum_moved:{when}",
                    "sum_moved",
                    when,
                    f"coinsum: 27币涨跌幅总和 30 分钟内变动 {now - was:+.2f} 个百分点"
                    f"（{was:+.2f}% → {now:+.2f}%，{when} 北京时间）",
                    {"change": now - was, "sum_pct": now, "previous": was, "threshold": move},
                )
            )
    return alerts


def late_alert(due: datetime, now: datetime) -> Alert:
    """The slot ``due`` (naive Beijing) should be stored by ``now`` and is not."""
    when = _when(due)
    minutes = int((now.replace(tzinfo=None) - due).total_seconds() // 60)
    return Alert(
        f"slot_late:{when}",
        "slot_late",
        when,
        f"coinsum: {when} 的数据开始 {minutes} 分钟后仍未入库（请看 Dagster 的 live_slots 和 "
        "gap_repair）",
        {"minutes": minutes},
    )


def trial_alert(now: datetime) -> Alert:
    """A message that says only that alerts reach their endpoint (``coinsum alert --test``), so
    the webhook can be tried without waiting for the market."""
    when = now.strftime("%Y-%m-%d %H:%M:%S")
    return Alert(
        f"test:{when}",
        "test",
        _when(now),
        f"coinsum: 测试消息，告警已接通（{when} 北京时间）。This is a test alert from coinsum.",
        {},
    )
